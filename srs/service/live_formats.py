"""Wire formats of live audio: jambonz ``listen`` and Twilio Media Streams, as pure functions.

jambonz (subprotocol ``audio.jambonz.org``, https://docs.jambonz.org/verbs/verbs/listen): one JSON
text frame with the call's attributes plus ``sampleRate`` and ``mixType``, then binary frames of
16-bit little-endian PCM (channels interleaved for ``stereo``); DTMF, when passed, as JSON text
frames ``{"event": "dtmf", "dtmf": digit, "duration": ms}``.

Twilio Media Streams (https://www.twilio.com/docs/voice/media-streams/websocket-messages): JSON
text frames ``connected`` {event, protocol, version}; ``start`` {event, sequenceNumber, start:
{accountSid, streamSid, callSid, tracks, customParameters, mediaFormat: {encoding, sampleRate,
channels}}, streamSid}; ``media`` {event, sequenceNumber, media: {track, chunk, timestamp,
payload}, streamSid} with base64 8 kHz µ-law; ``dtmf`` {event, streamSid, sequenceNumber, dtmf:
{track, digit}}; ``stop`` {event, sequenceNumber, stop: {accountSid, callSid}, streamSid}.
Numbers that Twilio sends as strings (sequenceNumber, chunk, timestamp) are strings here too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

JAMBONZ_SUBPROTOCOL = "audio.jambonz.org"
TWILIO_ACCOUNT = "srs"
"""Twilio's accountSid has no meaning here; it is set to this constant so the field is present."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a listener is told about the call it listens to."""

    key: str
    recording_id: str
    call_recording_id: str | None
    sip_call_id: str
    source: str
    labels: tuple[str, ...]
    """Stream labels in m-line order (the channel order of ``streams`` mix)."""
    participants: tuple[Mapping[str, Any], ...] = ()
    """{id, aor, name, send} of each RFC 7865 participant."""
    sides: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    """Labels of the left and right side (as in the stereo recording output)."""
    extensions: tuple[str, ...] = field(default_factory=tuple)


def jambonz_start(info: CallInfo, sample_rate: int, mix_type: str) -> str:
    parties = [p.get("aor") or p.get("name") or "" for p in info.participants]
    body = {
        "callSid": info.recording_id,
        "callId": info.sip_call_id,
        "direction": "inbound",
        "from": parties[0] if parties else "",
        "to": parties[1] if len(parties) > 1 else "",
        "callStatus": "in-progress",
        "sampleRate": sample_rate,
        "mixType": mix_type,
        "callRecordingId": info.call_recording_id,
        "participants": [dict(p) for p in info.participants],
        "streams": list(info.labels),
        "channels": channel_names(info, mix_type),
        "source": info.source,
    }
    return json.dumps(body)


def channel_names(info: CallInfo, mix_type: str) -> list[str]:
    if mix_type == "stereo":
        return ["left", "right"]
    if mix_type == "streams":
        return list(info.labels)
    return ["mix"]


def jambonz_dtmf(digit: str, duration_ms: int = 0) -> str:
    return json.dumps({"event": "dtmf", "dtmf": digit, "duration": str(duration_ms)})


def jambonz_metadata(info: CallInfo) -> str:
    """srs's own text event (not in jambonz's listen protocol): the call's metadata changed."""
    return json.dumps({
        "event": "metadata", "callSid": info.recording_id, "callRecordingId": info.call_recording_id,
        "participants": [dict(p) for p in info.participants], "streams": list(info.labels),
    })


def twilio_metadata(info: CallInfo, stream_sid: str, seq: int) -> str:
    """srs's own event (Twilio has none for this); consumers that do not know it skip it."""
    return json.dumps({
        "event": "metadata", "sequenceNumber": str(seq), "streamSid": stream_sid,
        "metadata": _custom(info),
    })


def twilio_connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def _custom(info: CallInfo) -> dict[str, str]:
    return {
        "callRecordingId": info.call_recording_id or "",
        "sipCallId": info.sip_call_id,
        "recordingId": info.recording_id,
        "source": info.source,
        "participants": json.dumps([dict(p) for p in info.participants]),
        "streams": ",".join(info.labels),
        "inbound": ",".join(info.sides[0]),
        "outbound": ",".join(info.sides[1]),
    }


def twilio_start(info: CallInfo, stream_sid: str, seq: int) -> str:
    custom = _custom(info)
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(seq),
            "start": {
                "accountSid": TWILIO_ACCOUNT,
                "streamSid": stream_sid,
                "callSid": info.recording_id,
                "tracks": ["inbound", "outbound"],
                "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": stream_sid,
        }
    )


def twilio_media(stream_sid: str, seq: int, track: str, chunk: int, timestamp_ms: int, ulaw: bytes) -> str:
    """Written as a template, not through ``json.dumps``: it runs 50 times a second per track and
    listener, and every value is a known-safe token (digits, base64, srs's own ids)."""
    payload = base64.b64encode(ulaw).decode("ascii")
    return (
        f'{{"event": "media", "sequenceNumber": "{seq}", "media": {{"track": "{track}", '
        f'"chunk": "{chunk}", "timestamp": "{timestamp_ms}", "payload": "{payload}"}}, '
        f'"streamSid": "{stream_sid}"}}'
    )


def twilio_dtmf(stream_sid: str, seq: int, track: str, digit: str) -> str:
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(seq),
            "dtmf": {"track": f"{track}_track", "digit": digit},
        }
    )


def twilio_stop(info: CallInfo, stream_sid: str, seq: int) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "stop": {"accountSid": TWILIO_ACCOUNT, "callSid": info.recording_id},
            "streamSid": stream_sid,
        }
    )


_BIAS = 0x84
_CLIP = 32635


def _ulaw_compute(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    codes: NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


_ULAW_TABLE = _ulaw_compute(np.arange(-32768, 32768, dtype=np.int32).astype(np.int16))
"""µ-law code of every 16-bit sample, indexed by the sample + 32768 (64 KiB, built once)."""


def ulaw_encode(pcm: NDArray[np.int16]) -> bytes:
    """G.711 µ-law of 16-bit samples (the standard segment encoding), by table lookup."""
    return bytes(_ULAW_TABLE[pcm.astype(np.int32) + 32768].tobytes())


def ulaw_decode(data: bytes) -> NDArray[np.int16]:
    """The inverse (tests and tools)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def upsample(pcm: NDArray[np.int16], factor: int) -> NDArray[np.int16]:
    """8 kHz to ``factor`` × 8 kHz by linear interpolation (enough for speech analytics)."""
    if factor == 1 or len(pcm) == 0:
        return pcm
    x = np.arange(len(pcm) * factor) / factor
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float64)).astype(np.int16)


def interleave(channels: Sequence[NDArray[np.int16]]) -> bytes:
    return bytes(np.stack(channels, axis=1).astype("<i2").tobytes())
