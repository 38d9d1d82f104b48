"""Synthetic media (never a camera or a microphone) and counters of received frames.

The video is a moving gradient with a slowly changing tint (320x240, 30 fps; 160x120 at 15 fps
in low-video mode); the audio is a 440 Hz tone (48 kHz mono, 20 ms frames).
"""

from __future__ import annotations

import array
import asyncio
import fractions
import logging
import math
import time
from collections.abc import Callable
from typing import Final

from aiortc.mediastreams import (
    AudioStreamTrack,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame

log = logging.getLogger("ruang.peer.media")

SIZE_NORMAL = (320, 240)
SIZE_LOW = (160, 120)
SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = 960  # 20 ms
TONE_HZ = 440


class SyntheticVideoTrack(VideoStreamTrack):
    """Moving frames; ``low`` halves the size and the frame rate."""

    def __init__(self) -> None:
        super().__init__()
        self.low = False
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self.low:  # 15 fps: skip every other tick
            pts, time_base = await self.next_timestamp()
        self._count += 1
        width, height = SIZE_LOW if self.low else SIZE_NORMAL
        frame = VideoFrame(width=width, height=height, format="yuv420p")
        shift = self._count * 4
        luma, chroma_u, chroma_v = frame.planes
        row = bytes(((x + shift) * 2) & 0xFF for x in range(luma.line_size))
        luma.update(row * height)
        tint = (self._count // 3) & 0xFF
        chroma_u.update(bytes([tint]) * chroma_u.buffer_size)
        chroma_v.update(bytes([255 - tint]) * chroma_v.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def _one_second_of_tone() -> bytes:
    """One second holds exactly 440 periods, so the buffer loops without a click."""
    samples = array.array(
        "h",
        (int(6000 * math.sin(2 * math.pi * TONE_HZ * i / SAMPLE_RATE)) for i in range(SAMPLE_RATE)),
    )
    return samples.tobytes()


# Immutable, made once at import: making it per track cost ~20 ms of CPU inside every new peer
# connection, on the call-setup path of both sides (bench/callsetup.py).
TONE_PCM: Final = _one_second_of_tone()


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone, paced in real time like aiortc's own audio track."""

    def __init__(self) -> None:
        super().__init__()
        self._tone = TONE_PCM
        self._t0: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.time()
        else:
            self._pts += SAMPLES_PER_FRAME
            await asyncio.sleep(self._t0 + self._pts / SAMPLE_RATE - time.time())
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        offset = (self._pts % SAMPLE_RATE) * 2
        chunk = self._tone[offset : offset + SAMPLES_PER_FRAME * 2]
        plane = frame.planes[0]
        plane.update(chunk + bytes(plane.buffer_size - len(chunk)))
        frame.pts = self._pts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def report_due(frames: int) -> bool:
    """When to report a frame count: at 1, 30, 100, then every 100 frames."""
    return frames in (1, 30) or frames % 100 == 0


class FrameCounter:
    """Counts frames received for one kind, across every peer connection of the run."""

    def __init__(self, kind: str, report: Callable[[str, int], None]) -> None:
        self.kind = kind
        self.frames = 0
        self._report = report

    async def consume(self, track: MediaStreamTrack) -> None:
        """Read ``track`` until it ends, counting (and reporting) its frames."""
        try:
            while True:
                await track.recv()
                self.frames += 1
                if report_due(self.frames):
                    self._report(self.kind, self.frames)
        except MediaStreamError:
            log.debug("remote %s track ended", self.kind)
