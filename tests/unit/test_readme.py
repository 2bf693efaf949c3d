"""README.md says what the code does: exit codes, and the SIPp walkthrough's first step."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from srs.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def table_after(heading: str, text: str = README) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after ``heading``, header excluded."""
    section = text.split(heading, 1)[1]
    rows: list[list[str]] = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif started:
            break
    return [row for row in rows[1:] if not set("".join(row)) <= set("-: ")]


def test_the_exit_code_table_lists_every_exit_code() -> None:
    documented = {int(row[0]) for row in table_after("### Exit codes")}
    assert documented == {int(code) for code in ExitCode}


def test_the_readme_sipp_step_works_in_a_directory_without_pcap(tmp_path: Path) -> None:
    """Defect 6: ``make_pcap.py pcap/two_tone_pcmu.pcap`` in a fresh clone (no ``pcap/``)."""
    block = README.split("## Load testing with SIPp", 1)[1]
    line = next(line for line in block.splitlines() if line.startswith("../.venv/bin/python make_pcap.py"))
    args = line.split("#")[0].split()[2:]  # after "<python> make_pcap.py"
    assert args[0] == "pcap/two_tone_pcmu.pcap"
    shutil.copy(ROOT / "sipp-scenarios" / "make_pcap.py", tmp_path)
    done = subprocess.run(
        [sys.executable, "make_pcap.py", *args], cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "pcap" / "two_tone_pcmu.pcap").stat().st_size > 100_000


def test_documented_config_precedence_matches_the_environment_names() -> None:
    from srs.cli.common import ENV_CONFIG, ENV_DATA_DIR

    assert f"`{ENV_DATA_DIR}`" in README and f"`{ENV_CONFIG}`" in README
    assert re.search(r"the flag, then\s+the\s+environment", README)
