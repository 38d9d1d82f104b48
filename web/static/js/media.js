// Local camera and microphone: getting them (with fallbacks), listing devices, and a level
// reading for a meter. No DOM.

export class MediaError extends Error {
  constructor(message, kind) {
    super(message);
    this.name = "MediaError";
    this.kind = kind; // "denied" | "none" | "failed"
  }
}

const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };

function constraint(deviceId, base) {
  if (!deviceId) return base === true ? true : { ...base };
  return { ...(base === true ? {} : base), deviceId: { exact: deviceId } };
}

/**
 * A MediaStream with a microphone and a camera when possible: both, else the microphone alone,
 * else the camera alone. Throws MediaError ("denied" when the person or the browser blocked it,
 * "none" when there is no device).
 */
export async function getLocalMedia({ cameraId = null, micId = null } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaError("getUserMedia is unavailable", "none");
  }
  const audio = constraint(micId, { echoCancellation: true, noiseSuppression: true, autoGainControl: true });
  const video = constraint(cameraId, VIDEO);
  const attempts = [{ audio, video }, { audio, video: false }, { audio: false, video }];
  let last = null;
  for (const c of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (error) {
      last = error;
      if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
        throw new MediaError("camera and microphone were blocked", "denied");
      }
    }
  }
  const kind = last && last.name === "NotFoundError" ? "none" : "failed";
  throw new MediaError("no camera or microphone could be opened", kind);
}

/** {cameras, microphones}: lists of {deviceId, label}. */
export async function listDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    return { cameras: [], microphones: [] };
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind) => devices
    .filter((d) => d.kind === kind && d.deviceId)
    .map((d) => ({ deviceId: d.deviceId, label: d.label }));
  return { cameras: pick("videoinput"), microphones: pick("audioinput") };
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/** A microphone level reader: read() gives 0..1 (RMS); close() releases the audio graph. */
export function micLevel(stream) {
  const track = stream && stream.getAudioTracks()[0];
  const Context = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!track || !Context) return { read: () => 0, resume: () => undefined, close: () => undefined };
  const context = new Context();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  return {
    read() {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) sum += v * v;
      return Math.min(1, Math.sqrt(sum / data.length) * 4);
    },
    resume() {
      if (context.state === "suspended") context.resume().catch(() => undefined);
    },
    close() {
      source.disconnect();
      context.close().catch(() => undefined);
    },
  };
}
