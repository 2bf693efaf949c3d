"""The parts of the stream track's pipeline, each on its own: sequence accounting, placement,
source latching, sender reports, coverage and rendering."""

from __future__ import annotations

import numpy as np
import pytest

from srs.media.latch import MAX_REJECTED, MAX_SOURCES, REPLAYED_SOURCE, SourceLatch
from srs.media.placement import Placement
from srs.media.rendering import PayloadFormat, Renderer
from srs.media.sender_reports import MAX_SSRCS, SenderReports
from srs.media.sequence import FIRST_SEQ_BASE, MISSING_KEPT, SequenceTracker
from srs.media.statistics import Coverage
from srs.rtp.rtcp import NTP_UNIX_OFFSET, SenderReport
from tests.unit.media.fixtures import ULAW, factory

# ---------------------------------------------------------------- sequence


def _started(seq: int = 100, ts: int = 1000) -> SequenceTracker:
    tracker = SequenceTracker()
    tracker.new_ssrc(7)
    tracker.restart(seq, ts)
    return tracker


def test_in_order_packets_across_the_sequence_and_timestamp_wrap() -> None:
    tracker = _started(0xFFFE, 0xFFFFFF00)
    exts = []
    for i in range(4):
        d = tracker.delta((0xFFFE + i) & 0xFFFF)
        assert d == 1
        exts.append(tracker.advance(d, (0xFFFFFF00 + 160 * i) & 0xFFFFFFFF))
    assert [e for e, _ in exts] == [FIRST_SEQ_BASE + 0xFFFE + i for i in range(4)]
    assert [t for _, t in exts] == [0xFFFFFF00 + 160 * i for i in range(4)]  # extended past 2^32
    assert tracker.received == 4 and tracker.lost == 0


def test_a_hole_is_lost_until_filled_and_a_second_copy_is_a_duplicate() -> None:
    tracker = _started()
    tracker.advance(tracker.delta(100), 1000)
    tracker.advance(tracker.delta(103), 1480)  # 101 and 102 missing
    assert tracker.lost == 2
    assert tracker.fill(tracker.behind(tracker.delta(101)))
    assert tracker.lost == 1
    assert not tracker.fill(tracker.behind(tracker.delta(101)))
    assert tracker.packets_duplicate == 1 and tracker.received == 4


def test_a_late_packet_fills_its_hole_without_counting_as_a_duplicate() -> None:
    tracker = _started()
    tracker.advance(tracker.delta(100), 1000)
    tracker.advance(tracker.delta(102), 1320)
    tracker.fill_late(tracker.behind(tracker.delta(101)))
    tracker.fill_late(tracker.behind(tracker.delta(101)))
    assert tracker.lost == 0 and tracker.packets_duplicate == 0 and tracker.received == 3


def test_a_restart_keeps_the_old_space_below_the_new_one() -> None:
    tracker = _started()
    for seq in range(100, 105):
        tracker.advance(tracker.delta(seq), seq * 160)
    old_max = tracker.max_seq
    tracker.new_ssrc(8)
    tracker.restart(5, 0)
    assert tracker.space_floor > old_max and tracker.max_seq + 1 > old_max
    assert tracker.ssrcs == [7, 8] and tracker.ssrc_changes == 1
    tracker.advance(tracker.delta(5), 0)
    assert tracker.received == 6 and tracker.lost == 0


def test_remembered_holes_are_bounded() -> None:
    tracker = _started()
    tracker.advance(tracker.delta(100), 0)
    seq = 100
    for _ in range(5):
        seq += 2000  # below the dropout limit, 1999 holes each
        tracker.advance(tracker.delta(seq & 0xFFFF), seq * 160)
    assert len(tracker.missing) > MISSING_KEPT
    tracker.prune()
    assert len(tracker.missing) <= MISSING_KEPT
    assert min(tracker.missing) > tracker.max_seq - MISSING_KEPT


# ---------------------------------------------------------------- placement


def _placement(clock: int = 8000, **kw: float) -> Placement:
    args = dict(jump_threshold=2.0, late_reanchor_after=1.0, resync_threshold=0.25, resync_every=2.0)
    args.update(kw)
    return Placement(start=10.0, sample_rate=8000, clock=clock, **args)


def test_the_anchor_places_a_timestamp_at_its_arrival() -> None:
    placement = _placement()
    assert placement.anchor(5000, 11.0, 0) == 8000
    assert placement.position(5000 + 160) == 8160
    wide = _placement(clock=16000)
    wide.anchor(1000, 11.0, 0)
    assert wide.position(1000 + 320) == 8160 and wide.exact_position(1001) == 8000.5


def test_the_anchor_never_lands_on_written_samples() -> None:
    assert _placement().anchor(0, 10.5, rendered_until=6000) == 6000


def test_a_timestamp_jump_asks_for_a_new_anchor() -> None:
    placement = _placement()
    placement.anchor(0, 10.0, 0)
    assert not placement.jumped(placement.position(160), 10.02, 0)
    assert placement.jumped(placement.position(160 + 3 * 8000), 10.04, 0)  # 3 s ahead of its arrival
    # late by more than the threshold but its place is not written yet: the receiver's own delay
    assert not placement.jumped(placement.position(320), 13.0, 0)
    assert placement.jumped(placement.position(320), 13.0, 8000)


def test_in_order_late_packets_re_anchor_after_a_while_stragglers_never() -> None:
    placement = _placement()
    assert not placement.late(5, 11.0, in_order=False)
    assert not placement.late(10, 11.0, in_order=True)
    assert not placement.late(11, 11.5, in_order=True)
    assert placement.late(12, 12.0, in_order=True)  # a second of late in-order packets
    assert placement.packets_late == 3


def test_a_slow_clock_moves_placement_later_after_two_windows() -> None:
    placement = _placement()
    placement.anchor(0, 10.0, 0)
    for window in (1, 2):
        # the least-delayed packet of the window is 0.5 s behind its arrival
        at = 10.0 + 2.0 * window
        placement.jumped(placement.position(round((at - 10.5) * 8000)), at, 0)
        assert placement.resync_due(at)
        placement.resync(at)
        assert placement.clock_adjustments == window - 1
    assert placement.offset == 4000


def test_sender_report_shifts_are_not_taken_for_a_slow_clock() -> None:
    placement = _placement()
    placement.anchor(0, 10.0, 0)
    placement.shift_earlier(4000)
    for window in (1, 2):
        at = 10.0 + 2.0 * window
        placement.jumped(placement.position(round((at - 10.0) * 8000)), at, 0)
        placement.resync(at)
    assert placement.clock_adjustments == 0 and placement.sender_shift == 4000


# ---------------------------------------------------------------- latch

A, B = ("192.0.2.1", 4000), ("192.0.2.2", 4000)


def test_the_first_allowed_address_latches_others_are_counted() -> None:
    latch = SourceLatch(["192.0.2.1"], relatch_after=1.0)
    assert not latch.admit(B, 0.0, 0.0)
    assert latch.admit(A, 0.0, 0.0) and latch.source == A
    assert latch.packets_dropped_source == 1 and latch.rejected == {"192.0.2.2:4000": 1}
    assert latch.name == "192.0.2.1:4000" and latch.relatches == 0


def test_an_unrestricted_latch_keeps_strangers_out_after_a_pause() -> None:
    latch = SourceLatch(None, relatch_after=1.0)
    assert latch.admit(A, 0.0, 0.0)
    assert not latch.admit(B, 5.0, 0.0)  # silent 5 s, but another host
    assert latch.admit((A[0], 4002), 5.0, 0.0)  # the same host from another port, after the pause
    assert latch.relatches == 1 and latch.previous == "192.0.2.1:4000"


def test_a_relatch_lets_an_allowed_address_take_over_at_once() -> None:
    latch = SourceLatch(None, relatch_after=1.0)
    latch.admit(A, 0.0, 0.0)
    latch.allow(["192.0.2.2"])
    assert latch.relatch_pending
    assert latch.admit(B, 0.1, 0.09)
    assert latch.accepted == ["192.0.2.1:4000", "192.0.2.2:4000"]


def test_what_a_latch_remembers_is_bounded() -> None:
    latch = SourceLatch(None, relatch_after=0.0)
    latch.admit(A, 0.0, 0.0)
    for port in range(MAX_SOURCES + 5):
        latch.admit((A[0], 5000 + port), 1.0 + port, 0.0)
    assert len(latch.accepted) == MAX_SOURCES and latch.relatches == MAX_SOURCES + 5
    for n in range(MAX_REJECTED + 5):
        latch.admit((f"198.51.100.{n}", 9), 100.0, 100.0)
    assert len(latch.rejected) == MAX_REJECTED and latch.packets_dropped_source == MAX_REJECTED + 5


def test_only_allowed_hosts_and_the_journal_may_report() -> None:
    latch = SourceLatch(["192.0.2.1"], relatch_after=1.0)
    assert latch.may_report(A) and latch.may_report(REPLAYED_SOURCE) and not latch.may_report(B)
    assert SourceLatch(None, 1.0).may_report(B)


# ---------------------------------------------------------------- sender reports


def _sr(ssrc: int, unix: float, rtp_ts: int) -> SenderReport:
    ntp = round((unix + NTP_UNIX_OFFSET) * 2**32)
    return SenderReport(ssrc, ntp, rtp_ts, packet_count=0, octet_count=0, reports=())


def test_a_report_far_from_the_first_mapping_is_distrusted() -> None:
    reports = SenderReports()
    assert reports.add(_sr(1, 1000.0, 0), 10.0)
    assert reports.add(_sr(1, 1005.2, 41600), 15.0)
    assert not reports.add(_sr(1, 1100.0, 80000), 20.0)  # its wall clock jumped 95 s
    assert reports.latest[1][0] == 41600 and reports.latest[1][2] == 15.0 and reports.accepted == 2


def test_senders_remembered_are_bounded_and_garbage_is_malformed() -> None:
    reports = SenderReports()
    for ssrc in range(MAX_SSRCS + 3):
        reports.add(_sr(ssrc, 1000.0, 0), 10.0)
    assert len(reports.latest) == MAX_SSRCS
    assert not reports.push(b"\x80\xc8\x00", 11.0) and reports.received == 1


# ---------------------------------------------------------------- coverage and rendering


def test_coverage_counts_gaps_but_not_announced_silence() -> None:
    coverage = Coverage(8000)
    out = np.full(8000, 100, dtype=np.int16)
    coverage.account(0, 8000, [(0, 1600), (2400, 4000)], out)  # a 100 ms gap
    coverage.cn_positions.append(4000)
    coverage.account(0, 8000, [(6000, 8000)], out)  # silence announced by comfort noise
    assert coverage.gaps == [(200, 100)]
    assert coverage.captured == 5200 and coverage.expected == 8000 - 2000
    assert coverage.first == 0 and coverage.peak == 100


def _ulaw_renderer(conceal: bool = False) -> Renderer:
    return Renderer({0: PayloadFormat("PCMU", 8000)}, factory, 8000, conceal)


def _payload(seed: int) -> bytes:
    return bytes((seed * 7 + i) % 251 for i in range(160))


def test_rendering_places_decodes_and_carries_what_reaches_past_the_block() -> None:
    renderer, coverage = _ulaw_renderer(), Coverage(8000)
    renderer.pending = [(1, 0, 0, _payload(1)), (2, 160, 0, _payload(2)), (3, 7920, 0, _payload(3))]
    out = renderer.render(0, 8000, coverage)
    expected = ULAW[np.frombuffer(_payload(1) + _payload(2), dtype=np.uint8)]
    assert np.array_equal(out[:320], expected)
    assert not out[320:7920].any()
    assert renderer.carry is not None and len(renderer.carry) == 80 and renderer.rendered_until == 8000
    nxt = renderer.render(8000, 16000, coverage)
    assert np.array_equal(nxt[:80], ULAW[np.frombuffer(_payload(3)[80:], dtype=np.uint8)])
    assert coverage.captured == 480 and len(coverage.gaps) == 1


def test_an_undecodable_payload_type_is_counted_not_raised() -> None:
    renderer = Renderer({96: PayloadFormat("NOPE", 8000)}, factory, 8000, False)
    renderer.pending = [(1, 0, 96, b"\x00" * 20), (2, 160, 96, b"\x00" * 20)]
    assert not renderer.render(0, 800, Coverage(8000)).any()
    assert renderer.decoder_errors == 2


def test_waiting_entries_moved_back_are_rendered_in_place() -> None:
    renderer, coverage = _ulaw_renderer(), Coverage(8000)
    renderer.pending = [(0x10001, 4000, 0, _payload(1)), (0x10002, 4160, 0, _payload(2))]
    renderer.pending.append((5, 6000, 0, _payload(3)))  # an older sequence space
    renderer.shift(2000, floor=0x8000)  # only the current space (at or above the floor) moves
    assert renderer.unordered
    out = renderer.render(0, 8000, coverage)
    assert np.array_equal(out[2000:2160], ULAW[np.frombuffer(_payload(1), dtype=np.uint8)])
    assert np.array_equal(out[6000:6160], ULAW[np.frombuffer(_payload(3), dtype=np.uint8)])


def test_timestamps_stepping_back_in_sequence_render_alike_in_one_block_or_two() -> None:
    """Sequence numbers in order whose timestamps step back (1003 repeats 1001's, 1004 1002's):
    positions are not in sequence order although no re-anchor happened. The later packet wins
    its place whether a block boundary falls inside it or not (a bisect that assumed ordered
    positions left packet 1003 waiting, and 1001's audio stayed written in its place; found by
    the batch property test in ``test_track_batch.py``)."""
    places = [53, 213, 53, 213, 373, 1333]
    entries = [(1001 + n, place, 0, _payload(n + 1)) for n, place in enumerate(places)]
    whole = _ulaw_renderer()
    whole.pending = list(entries)
    one = whole.render(0, 800, Coverage(8000))
    split = _ulaw_renderer()
    split.pending = list(entries)
    two = np.concatenate([split.render(0, 106, Coverage(8000)), split.render(106, 800, Coverage(8000))])
    assert np.array_equal(one, two)
    assert np.array_equal(one[53:213], ULAW[np.frombuffer(_payload(3), dtype=np.uint8)])


@pytest.mark.parametrize("conceal", [False, True])
def test_a_hole_between_audio_is_concealed_only_when_asked(conceal: bool) -> None:
    renderer, coverage = _ulaw_renderer(conceal), Coverage(8000)
    tone = bytes(int(128 + 100 * np.sin(i / 5)) & 0xFF for i in range(160))
    renderer.pending = [(n, 160 * n, 0, tone) for n in range(20) if n not in (10, 11)]
    out = renderer.render(0, 3200, coverage)
    hole = out[1600:1920]
    assert hole.any() == conceal
    assert renderer.concealed_samples == (320 if conceal else 0)
    assert len(coverage.gaps) == 1  # concealed or not, the hole is reported

