// fingerprintFromSdp and the DTLS fingerprint rules of the committed safety code
// (docs: ARCHITECTURE "Safety code", step 3) on real SDPs: a Chrome offer (audio + video, BUNDLE;
// codec list shortened) and an aiortc offer, which writes sha-256, sha-384 and sha-512 lines.
import assert from "node:assert/strict";
import test from "node:test";

import { FingerprintError, fingerprintFromRtc, fingerprintFromSdp } from "../../web/static/js/crypto.js";

const crlf = (text) => text.split("\n").join("\r\n") + "\r\n";

// Chromium 156 createOffer() with RTCPeerConnection.generateCertificate (ECDSA P-256).
const CHROME_CERT_FINGERPRINTS = [
  {
    algorithm: "sha-256",
    value:
      "e7:c8:67:9b:7e:b9:da:90:7e:af:e1:20:a1:6d:54:d1:4b:45:e6:b3:9c:6b:9e:66:3d:46:2a:03:1d:ab:27:42",
  },
];
const CHROME_FP =
  "sha-256 E7:C8:67:9B:7E:B9:DA:90:7E:AF:E1:20:A1:6D:54:D1:4B:45:E6:B3:9C:6B:9E:66:3D:46:2A:03:1D:AB:27:42";
const CHROME_OFFER = crlf(`v=0
o=- 6033642383296449228 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 57973 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 192.0.2.2
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:4287348282 1 udp 2113937151 192.0.2.2 57973 typ host generation 0 network-cost 999
a=ice-ufrag:/tc8
a=ice-pwd:k8K41oRL0xOoW9FkVv77A5sw
a=ice-options:trickle
a=fingerprint:sha-256 E7:C8:67:9B:7E:B9:DA:90:7E:AF:E1:20:A1:6D:54:D1:4B:45:E6:B3:9C:6B:9E:66:3D:46:2A:03:1D:AB:27:42
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:- 70c62839-1ccc-4378-aa4c-21ece3f86840
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3062009398 cname:s5L29WtIZ/2dKzRB
a=ssrc:3062009398 msid:- 70c62839-1ccc-4378-aa4c-21ece3f86840
m=video 40512 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46
c=IN IP4 192.0.2.2
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:4287348282 1 udp 2113937151 192.0.2.2 40512 typ host generation 0 network-cost 999
a=ice-ufrag:/tc8
a=ice-pwd:k8K41oRL0xOoW9FkVv77A5sw
a=ice-options:trickle
a=fingerprint:sha-256 E7:C8:67:9B:7E:B9:DA:90:7E:AF:E1:20:A1:6D:54:D1:4B:45:E6:B3:9C:6B:9E:66:3D:46:2A:03:1D:AB:27:42
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:- beee05a3-eeb8-4e9b-9146-54363a7a0282
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 goog-remb
a=rtcp-fb:45 transport-cc
a=rtcp-fb:45 ccm fir
a=rtcp-fb:45 nack
a=rtcp-fb:45 nack pli
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=ssrc-group:FID 3063996594 2861939836
a=ssrc:3063996594 cname:s5L29WtIZ/2dKzRB
a=ssrc:3063996594 msid:- beee05a3-eeb8-4e9b-9146-54363a7a0282
a=ssrc:2861939836 cname:s5L29WtIZ/2dKzRB
a=ssrc:2861939836 msid:- beee05a3-eeb8-4e9b-9146-54363a7a0282`);

// aiortc 1.16 RTCPeerConnection offer (audio + video transceivers), as aiortc writes it.
const AIORTC_FP =
  "sha-256 9C:EE:AD:36:01:FD:D6:53:2E:BD:2C:F9:87:5D:31:C6:97:E6:72:1E:6F:A8:B7:5A:AE:00:27:BC:63:ED:D9:72";
const AIORTC_OFFER = crlf(`v=0
o=- 4004555387 4004555387 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=audio 41553 UDP/TLS/RTP/SAVPF 96 9 0 8
c=IN IP4 192.0.2.2
a=sendrecv
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=mid:0
a=msid:f6b801cf-b8c6-41e2-9bcb-440cf2c7b47b af57acdf-5e9c-4bb8-b134-48c9653fc488
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc:2558898940 cname:f7eee760-21af-4d3a-af99-ff2bee3449cd
a=rtpmap:96 opus/48000/2
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 41553 typ host
a=end-of-candidates
a=ice-ufrag:XEgk
a=ice-pwd:uPuDRbtz3KBgnQUyZ2EsPf
a=fingerprint:sha-256 9C:EE:AD:36:01:FD:D6:53:2E:BD:2C:F9:87:5D:31:C6:97:E6:72:1E:6F:A8:B7:5A:AE:00:27:BC:63:ED:D9:72
a=fingerprint:sha-384 C8:75:D8:7E:7F:78:1E:A0:F1:BC:CB:B9:81:01:4F:06:F8:D6:A0:21:D5:FA:10:1E:88:CB:A6:F6:8E:82:50:41:8D:4F:67:E2:B5:94:05:55:0D:B3:3F:38:B1:E6:FB:BF
a=fingerprint:sha-512 91:94:6F:60:84:D3:C6:56:45:85:5B:B8:AB:2C:49:C0:F8:85:71:4B:95:04:32:28:28:07:8B:F2:CE:52:7B:DE:C7:15:3A:16:AB:04:E9:6C:31:C3:02:7A:F6:EC:F0:2A:53:72:0A:B7:D0:7E:02:18:0C:EF:9F:18:D9:3C:7C:F0
a=setup:actpass
m=video 33981 UDP/TLS/RTP/SAVPF 97 98 99 100
c=IN IP4 192.0.2.2
a=sendrecv
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=mid:1
a=msid:f6b801cf-b8c6-41e2-9bcb-440cf2c7b47b 57c773dc-bfce-40e0-b2f4-3c6104169f98
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc-group:FID 3078020457 3386105927
a=ssrc:3078020457 cname:f7eee760-21af-4d3a-af99-ff2bee3449cd
a=ssrc:3386105927 cname:f7eee760-21af-4d3a-af99-ff2bee3449cd
a=rtpmap:97 VP8/90000
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 goog-remb
a=rtpmap:98 rtx/90000
a=fmtp:98 apt=97
a=rtpmap:99 H264/90000
a=rtcp-fb:99 nack
a=rtcp-fb:99 nack pli
a=rtcp-fb:99 goog-remb
a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:100 rtx/90000
a=fmtp:100 apt=99
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 33981 typ host
a=end-of-candidates
a=ice-ufrag:XEgk
a=ice-pwd:uPuDRbtz3KBgnQUyZ2EsPf
a=fingerprint:sha-256 9C:EE:AD:36:01:FD:D6:53:2E:BD:2C:F9:87:5D:31:C6:97:E6:72:1E:6F:A8:B7:5A:AE:00:27:BC:63:ED:D9:72
a=fingerprint:sha-384 C8:75:D8:7E:7F:78:1E:A0:F1:BC:CB:B9:81:01:4F:06:F8:D6:A0:21:D5:FA:10:1E:88:CB:A6:F6:8E:82:50:41:8D:4F:67:E2:B5:94:05:55:0D:B3:3F:38:B1:E6:FB:BF
a=fingerprint:sha-512 91:94:6F:60:84:D3:C6:56:45:85:5B:B8:AB:2C:49:C0:F8:85:71:4B:95:04:32:28:28:07:8B:F2:CE:52:7B:DE:C7:15:3A:16:AB:04:E9:6C:31:C3:02:7A:F6:EC:F0:2A:53:72:0A:B7:D0:7E:02:18:0C:EF:9F:18:D9:3C:7C:F0
a=setup:actpass`);

const lines = (sdp) => sdp.split("\r\n");
const dropLines = (sdp, re) => lines(sdp).filter((l) => !re.test(l)).join("\r\n");
const mapLines = (sdp, fn) => lines(sdp).map(fn).join("\r\n");
// Replace the fingerprint line of the n-th m-section (0-based) only.
function editSection(sdp, n, fn) {
  let section = -1;
  return mapLines(sdp, (l) => {
    if (l.startsWith("m=")) section += 1;
    return section === n && l.startsWith("a=fingerprint:") ? fn(l) : l;
  });
}
const refuses = (sdp, why) => assert.throws(() => fingerprintFromSdp(sdp), FingerprintError, why);

test("Chrome offer: one sha-256 per m-section, equal to the certificate's", () => {
  assert.equal(lines(CHROME_OFFER).filter((l) => l.startsWith("m=")).length, 2);
  assert.equal(fingerprintFromSdp(CHROME_OFFER), CHROME_FP);
  assert.equal(fingerprintFromRtc(CHROME_CERT_FINGERPRINTS), CHROME_FP);
  assert.equal(fingerprintFromSdp(CHROME_OFFER.replaceAll("\r\n", "\n")), CHROME_FP); // LF only
});

test("Chrome offer variants", () => {
  // Lowercase hex and an upper-case algorithm name are the same fingerprint: uppercased.
  const lower = mapLines(CHROME_OFFER, (l) => (l.startsWith("a=fingerprint:") ? l.toLowerCase() : l));
  assert.equal(fingerprintFromSdp(lower), CHROME_FP);
  const upperAlg = CHROME_OFFER.replaceAll("a=fingerprint:sha-256", "a=fingerprint:SHA-256");
  assert.equal(fingerprintFromSdp(upperAlg), CHROME_FP);
  // Firefox style: one session-level line covering every m-section (RFC 8122).
  const fpLine = `a=fingerprint:${CHROME_FP}`;
  const sessionLevel = dropLines(CHROME_OFFER, /^a=fingerprint:/).replace(
    "a=group:BUNDLE 0 1",
    `a=group:BUNDLE 0 1\r\n${fpLine}`,
  );
  assert.equal(fingerprintFromSdp(sessionLevel), CHROME_FP);
  // A session-level line beside equal media-level lines is fine; a different one is not.
  const both = CHROME_OFFER.replace("a=group:BUNDLE 0 1", `a=group:BUNDLE 0 1\r\n${fpLine}`);
  assert.equal(fingerprintFromSdp(both), CHROME_FP);
  const otherFp = fpLine.replace("E7:C8", "E7:C9");
  refuses(CHROME_OFFER.replace("a=group:BUNDLE 0 1", `a=group:BUNDLE 0 1\r\n${otherFp}`), "session differs");
  refuses(sessionLevel.replace(fpLine, `${fpLine}\r\n${fpLine}`), "two session-level lines");
});

test("Chrome offer tampered: refused", () => {
  refuses(editSection(CHROME_OFFER, 1, (l) => l.replace("E7:C8", "E7:C9")), "m-sections differ");
  refuses(editSection(CHROME_OFFER, 1, () => "a=ice-lite"), "an m-section without fingerprint");
  refuses(editSection(CHROME_OFFER, 0, (l) => `${l}\r\n${l}`), "two lines in one m-section");
  refuses(editSection(CHROME_OFFER, 0, (l) => l.replace("sha-256", "sha-1")), "other algorithm");
  refuses(editSection(CHROME_OFFER, 0, (l) => l.replace(" E7", "  E7")), "two spaces");
  refuses(editSection(CHROME_OFFER, 0, (l) => `${l} `), "trailing space");
  refuses(editSection(CHROME_OFFER, 0, (l) => l.replace(":42", "")), "31 bytes");
  refuses(editSection(CHROME_OFFER, 0, (l) => `${l}:00`), "33 bytes");
  refuses(editSection(CHROME_OFFER, 0, (l) => l.replaceAll(":", "-").replace("a=fingerprint-", "a=fingerprint:")), "dashes");
  refuses(editSection(CHROME_OFFER, 0, () => "a=fingerprint:sha-256"), "no value");
  refuses(editSection(CHROME_OFFER, 0, (l) => l.replace("a=fingerprint", "a=FINGERPRINT") + `\r\n${l}`), "odd-cased duplicate");
  refuses(dropLines(CHROME_OFFER, /^a=fingerprint:/), "no fingerprint at all");
  refuses(lines(CHROME_OFFER).slice(0, 7).join("\r\n"), "no m-section");
  refuses("", "empty");
  refuses(undefined, "not a string");
});

test("aiortc offer: sha-384/512 refused unless only sha-256 remains", () => {
  assert.equal(lines(AIORTC_OFFER).filter((l) => l.startsWith("a=fingerprint:")).length, 6);
  refuses(AIORTC_OFFER, "as aiortc writes it");
  refuses(dropLines(AIORTC_OFFER, /^a=fingerprint:sha-384 /), "sha-512 left");
  refuses(dropLines(AIORTC_OFFER, /^a=fingerprint:sha-512 /), "sha-384 left");
  refuses(dropLines(AIORTC_OFFER, /^a=fingerprint:sha-256 /), "only sha-384/512 left");
  // What the Python peer sends: its sha-384 and sha-512 lines deleted.
  assert.equal(fingerprintFromSdp(dropLines(AIORTC_OFFER, /^a=fingerprint:sha-(384|512) /)), AIORTC_FP);
  // Deleted in one m-section only: still refused.
  const once = editSection(AIORTC_OFFER, 0, (l) => (l.includes("sha-256") ? l : "a=ice-lite"));
  refuses(once, "one m-section still has sha-384/512");
  assert.equal(fingerprintFromSdp(dropLines(once, /^a=fingerprint:sha-(384|512) /)), AIORTC_FP);
});
