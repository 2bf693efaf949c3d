"""The bench's own paths: a section that finds no SIPp scenario skips itself silently, so a wrong
path (the bench moved out of the package and looked one folder too high) hid the low-load figure."""

from __future__ import annotations

from bench.__main__ import REPO, SCENARIOS


def test_the_bench_finds_the_repository_and_its_scenarios() -> None:
    assert (REPO / "pyproject.toml").is_file()
    assert (SCENARIOS / "siprec_load.xml").is_file()
    assert (SCENARIOS / "make_pcap.py").is_file()
