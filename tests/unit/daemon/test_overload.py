"""Load shedding by loop lag: refuse new calls while behind, accept again once caught up."""

from __future__ import annotations

import pytest

from srs.daemon.overload import LagMonitor


def test_a_quiet_loop_is_never_overloaded() -> None:
    monitor = LagMonitor(limit=0.25)
    assert not any(monitor.observe(0.002) for _ in range(1000))


def test_one_spike_does_not_shed_but_a_sustained_lag_does() -> None:
    monitor = LagMonitor(limit=0.25)
    assert monitor.observe(0.5) is False  # smoothed: 0.15
    assert monitor.observe(0.5) is True  # 0.255


def test_hysteresis_clears_only_below_half_the_limit() -> None:
    monitor = LagMonitor(limit=0.2)
    for _ in range(20):
        monitor.observe(1.0)
    assert monitor.overloaded
    steps = 0
    while monitor.observe(0.0):
        steps += 1
        assert monitor.lag > 0.1
    assert monitor.lag <= 0.1 and steps > 0


def test_negative_lag_counts_as_none() -> None:
    monitor = LagMonitor(limit=0.1)
    monitor.observe(-5.0)
    assert monitor.lag == 0.0


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LagMonitor(0)


# ------------------------------------------------------------------ shedding by SIP queue


def test_backlog_over_the_limit_sheds_and_clears_below_half() -> None:
    from srs.daemon.overload import BacklogMonitor

    monitor = BacklogMonitor(limit=1_000_000)
    assert monitor.observe(0) is False
    assert monitor.observe(1_000_000) is False  # at the limit: not over it
    assert monitor.observe(1_000_001) is True
    assert monitor.observe(600_000) is True  # hysteresis: still above half
    assert monitor.observe(500_000) is False
    with pytest.raises(ValueError):
        BacklogMonitor(limit=0)
