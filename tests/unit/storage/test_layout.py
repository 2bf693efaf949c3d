from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from srs.media.wavfile import WavWriter
from srs.storage.errors import InvalidId, UnsafePath
from srs.storage.ids import is_valid_id, new_id
from srs.storage.layout import DataLayout


def test_ids_sort_by_time_and_match_pattern() -> None:
    early, late = new_id(1_700_000_000.0), new_id(1_700_000_000.002)
    assert is_valid_id(early) and is_valid_id(late)
    assert len(early) == 26
    assert early < late


def test_ids_made_in_the_same_millisecond_differ() -> None:
    assert len({new_id(1_700_000_000.0) for _ in range(1000)}) == 1000


def test_recording_path_is_dated_by_utc_start(layout: DataLayout) -> None:
    rid = new_id(0)
    path = layout.recording_path(rid, 1_700_000_000.0)  # 2023-11-14T22:13:20Z
    assert path == layout.data_dir / "recordings" / "2023" / "11" / "14" / f"{rid}.wav"
    assert layout.metadata_dir(rid, 1_700_000_000.0) == path.with_name(f"{rid}.metadata")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        "../../etc/passwd",
        "01HZZZZZZZZZZZZZZZZZZZZZZ/",
        "01hzx3y5q8k2m4n6p8r0s2t4v6",
        "01HZX3Y5Q8K2M4N6P8R0S2T4V",
        "01HZX3Y5Q8K2M4N6P8R0S2T4V6X",
        "01HZX3Y5Q8K2M4N6P8R0S2T4VI",
        "01HZX3Y5Q8K2M4N6P8R0S2T4V\x00",
        "01HZX3Y5Q8K2M4N6P8R0S2T4V/",
        "０1HZX3Y5Q8K2M4N6P8R0S2T4V6",
    ],
)
def test_ids_from_outside_are_checked_before_becoming_paths(layout: DataLayout, bad: str) -> None:
    with pytest.raises(InvalidId):
        layout.recording_path(bad, 0)
    with pytest.raises(InvalidId):
        layout.export_path(bad, "zip")


@pytest.mark.parametrize("outside", ["../x", "/etc/passwd", "recordings/../../x", "/"])
def test_contain_refuses_paths_outside_the_data_dir(layout: DataLayout, outside: str) -> None:
    with pytest.raises(UnsafePath):
        layout.contain(outside)


def test_contain_follows_symlinks_before_judging(layout: DataLayout, tmp_path: Path) -> None:
    secret_elsewhere = tmp_path / "elsewhere.txt"
    secret_elsewhere.write_text("x")
    link = layout.recordings_dir / "sneaky.wav"
    link.symlink_to(secret_elsewhere)
    with pytest.raises(UnsafePath):
        layout.contain(link)
    inside = layout.recordings_dir / "ok.wav"
    assert layout.contain("recordings/ok.wav") == inside


def test_export_path_accepts_known_formats_only(layout: DataLayout) -> None:
    rid = new_id(0)
    assert layout.export_path(rid, "tar.gz").name == f"{rid}.tar.gz"
    with pytest.raises(UnsafePath):
        layout.export_path(rid, "../tar")


def test_secret_is_created_once_with_mode_0600(layout: DataLayout) -> None:
    first = layout.secret()
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(layout.secret_path).st_mode) == 0o600
    assert DataLayout(layout.data_dir).secret() == first
    assert [p.name for p in layout.data_dir.iterdir() if p.name.startswith(".")] == []


def test_truncated_secret_is_refused(layout: DataLayout) -> None:
    layout.secret_path.write_bytes(b"short")
    with pytest.raises(UnsafePath):
        layout.secret()


def test_a_symlink_planted_at_a_recording_name_is_judged_every_time(
    layout: DataLayout, tmp_path: Path
) -> None:
    rid = new_id(0)
    honest = layout.recording_path(rid, 1_700_000_000.0)  # the day directory is now remembered
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"x")
    honest.parent.mkdir(parents=True)
    honest.symlink_to(outside)
    with pytest.raises(UnsafePath):
        layout.recording_path(rid, 1_700_000_000.0)
    inside = layout.data_dir / "inside.wav"
    inside.write_bytes(b"x")
    honest.unlink()
    honest.symlink_to(inside)
    assert layout.recording_path(rid, 1_700_000_000.0) == inside
    assert layout.metadata_dir(rid, 1_700_000_000.0) == honest.parent / f"{rid}.metadata"


def test_a_symlink_planted_at_a_new_recording_name_is_never_written_through(
    layout: DataLayout, tmp_path: Path
) -> None:
    rid = new_id(0)
    path = layout.new_recording_path(rid, 1_700_000_000.0)
    assert path == layout.recording_path(rid, 1_700_000_000.0)
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"precious")
    path.parent.mkdir(parents=True)
    path.symlink_to(outside)
    with pytest.raises(FileExistsError):
        WavWriter(layout.new_recording_path(rid, 1_700_000_000.0))
    assert outside.read_bytes() == b"precious"


def test_make_dirs_creates_each_directory_once(layout: DataLayout) -> None:
    day = layout.recording_path(new_id(0), 1_700_000_000.0).parent
    layout.make_dirs(day)
    assert day.is_dir()
    layout.make_dirs(day)  # remembered: no second mkdir needed, and no error
    assert day.is_dir()


def test_secret_temp_file_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    """The old temp name was ``.secret.key.<pid>.tmp``, opened without O_EXCL/O_NOFOLLOW: a symlink
    planted there made the daemon overwrite the target with the key (and leak it)."""
    layout = DataLayout(tmp_path / "data")
    layout.data_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = layout.data_dir / f".secret.key.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    key = layout.secret()
    assert len(key) == 32 and victim.read_bytes() == b"precious"
    assert stat.S_IMODE(layout.secret_path.stat().st_mode) == 0o600
    assert [p.name for p in layout.data_dir.iterdir() if p.name.endswith(".tmp")] == [planted.name]


def test_secret_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    layout.data_dir.mkdir()
    (tmp_path / "elsewhere").write_bytes(b"k" * 32)
    layout.secret_path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        layout.secret()


def test_an_old_data_dir_is_made_private_and_a_new_index_is_0640(tmp_path: Path) -> None:
    from srs.storage.index import RecordingIndex

    old = os.umask(0o022)
    try:
        layout = DataLayout(tmp_path / "data")
        for directory in (layout.data_dir, layout.recordings_dir, layout.exports_dir):
            directory.mkdir(parents=True, mode=0o755)
            directory.chmod(0o755)
        fresh = RecordingIndex(layout.index_path, layout=layout)
        fresh.close()
        names = [layout.index_path.name + suffix for suffix in ("", "-wal", "-shm")]
        present = [layout.data_dir / n for n in names if (layout.data_dir / n).exists()]
        assert present and all(stat.S_IMODE(p.stat().st_mode) & 0o027 == 0 for p in present)
        layout.index_path.chmod(0o644)  # as an older release left it
        layout.ensure()
    finally:
        os.umask(old)
    for directory in (layout.data_dir, layout.recordings_dir, layout.exports_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750, directory
    assert stat.S_IMODE(layout.index_path.stat().st_mode) == 0o640
