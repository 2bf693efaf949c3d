"""µ-law against the codec library's decoder, the listener's framing, and push target options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import srs_codecs

from srs.config import ConfigError, build_config
from srs.service.live_formats import CallInfo, ulaw_decode, ulaw_encode
from srs.service.live_hub import Listener
from srs.service.live_push import parse_target

INFO = CallInfo("k", "rec", "crid", "cid@x", "127.0.0.1:5060", ("1", "2"),
                ({"id": "a", "aor": "sip:alice@x", "name": "Alice", "send": ["1"]},), (("1",), ("2",)))


def test_ulaw_round_trips_with_the_g711_decoder_over_every_code() -> None:
    codes = bytes(range(256))
    decoded = srs_codecs.get_decoder("PCMU", 8000, 1, None).decode(codes)
    assert np.array_equal(ulaw_decode(codes), decoded)
    # encoding what was decoded gives the same code back (0x7f and 0xff both mean zero)
    again = ulaw_encode(decoded)
    assert all(a == b or {a, b} == {0x7F, 0xFF} for a, b in zip(again, codes, strict=True))


def test_listener_stereo_waits_for_both_sides_then_interleaves() -> None:
    listener = Listener(INFO, mix="stereo", sample_rate=16000)
    start = json.loads(listener.queue.popleft()[1])
    assert start["sampleRate"] == 16000 and start["channels"] == ["left", "right"]
    listener.feed("1", np.full(160, 100, "<i2").tobytes(), 1.0)
    assert not listener.queue  # the other side has not spoken yet (waits up to 60 ms)
    listener.feed("2", np.full(160, -200, "<i2").tobytes(), 1.0)
    kind, data = listener.queue.popleft()
    frame = np.frombuffer(data, "<i2").reshape(-1, 2)
    assert kind == "bytes" and frame.shape == (320, 2)
    assert (frame[:, 0] == 100).all() and (frame[:, 1] == -200).all()


def test_a_silent_side_holds_the_mix_back_at_most_80_ms() -> None:
    listener = Listener(INFO, mix="mono")
    listener.queue.clear()
    for _ in range(4):
        listener.feed("1", np.full(160, 7, "<i2").tobytes(), 1.0)
    assert not listener.queue
    listener.feed("1", np.full(160, 7, "<i2").tobytes(), 1.0)
    assert len(listener.queue) == 1
    assert listener.padded == {"2": 160}


def test_a_gap_stood_in_for_is_not_played_twice() -> None:
    """Stream 1 loses a packet: the mix goes on with silence for it after 80 ms; when the tap then
    delivers the next packet with its 20 ms gap fill, the fill is skipped: the sides stay aligned."""
    listener = Listener(INFO, mix="streams")
    listener.queue.clear()
    frame = lambda v: np.full(160, v, "<i2").tobytes()  # noqa: E731
    listener.feed("1", frame(1), 1.0)
    listener.feed("2", frame(-1), 1.0)
    for k in range(2, 7):  # stream 1's packet 2 is lost; stream 2 runs on
        listener.feed("2", frame(-k), 1.0)
    listener.feed("1", bytes(320) + frame(3), 1.1, fill=160)
    for k in range(4, 7):
        listener.feed("1", frame(k), 1.1)
    firsts = [tuple(np.frombuffer(d, "<i2").reshape(-1, 2)[0]) for _, d in listener.queue]
    assert firsts == [(1, -1), (0, -2), (3, -3), (4, -4), (5, -5), (6, -6)]


def test_a_full_queue_drops_and_counts() -> None:
    listener = Listener(INFO, format="twilio", queue_frames=10)
    for _ in range(30):
        listener.feed("1", np.zeros(160, "<i2").tobytes(), 1.0)
    assert len(listener.queue) == 10 and listener.dropped == 22  # connected + start were forced in


def test_push_target_options() -> None:
    target = parse_target("wss://ai.example/x?k=v&srs.format=twilio&srs.participant=ALICE&srs.source=127.")
    assert target.url == "wss://ai.example/x?k=v" and target.format == "twilio"
    assert target.matches(INFO)
    assert not parse_target("ws://h/?srs.participant=bob").matches(INFO)
    assert not parse_target("ws://h/?srs.source=10.").matches(INFO)
    with pytest.raises(ValueError):
        parse_target("http://h/")
    with pytest.raises(ValueError):
        parse_target("ws://h/?srs.colour=red")
    with pytest.raises(ConfigError):
        build_config({"live": {"targets": ["ws://h/?srs.rate=44100"]}})
    with pytest.raises(ConfigError):
        build_config({"live": {"queue_frames": 1}})
