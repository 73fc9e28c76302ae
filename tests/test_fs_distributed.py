"""The shared layer-0 helpers: atomic directories / build-once (fs.py) and process ranks (distributed.py)."""

from __future__ import annotations

import pytest

from dali_relabel import fs
from dali_relabel.distributed import process_ranks


def test_build_once_builds_then_reuses(tmp_path):
    calls = []

    def fill(tmp):
        calls.append(tmp)
        (tmp / "done").write_text("x")

    final = tmp_path / "thing"
    complete = lambda d: (d / "done").is_file()  # noqa: E731
    assert fs.build_once(final, fill, complete=complete) is True
    assert fs.build_once(final, fill, complete=complete) is False
    assert len(calls) == 1 and (final / "done").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".thing.lock", "thing"]  # no temp left


def test_build_once_replaces_an_incomplete_directory(tmp_path):
    final = tmp_path / "thing"
    final.mkdir()
    (final / "partial").write_text("left by someone")
    fs.build_once(final, lambda tmp: (tmp / "done").write_text("x"), complete=lambda d: (d / "done").is_file())
    assert sorted(p.name for p in final.iterdir()) == ["done"]


def test_a_failed_fill_leaves_nothing(tmp_path):
    def fill(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        fs.build_once(tmp_path / "thing", fill, complete=lambda d: d.is_dir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".thing.lock"]


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    final = tmp_path / "thing"
    dead = tmp_path / f".thing.tmp-{fs._host()}-999999999-abcd1234"
    foreign = tmp_path / ".thing.tmp-otherhost-1-abcd1234"   # another machine's: not ours to judge
    for d in (dead, foreign):
        d.mkdir()
    with fs.atomic_directory(final) as tmp:
        (tmp / "f").write_text("x")
    assert not dead.exists() and foreign.exists() and (final / "f").is_file()


def test_atomic_write_text(tmp_path):
    fs.atomic_write_text(tmp_path / "a" / "list.txt", "one\n")
    fs.atomic_write_text(tmp_path / "a" / "list.txt", "two\n")
    assert (tmp_path / "a" / "list.txt").read_text() == "two\n"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["list.txt"]


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DALI_RELABEL_CACHE", str(tmp_path / "c"))
    assert fs.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DALI_RELABEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fs.cache_root() == tmp_path / "xdg" / "dali_relabel"


def test_process_ranks(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert process_ranks() == fs_ranks(0, 1, None)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_ranks() == fs_ranks(1, 3, 1)
    assert process_ranks(env=False) == fs_ranks(0, 1, 1)       # only a process group or arguments
    assert process_ranks(2, 4) == fs_ranks(2, 4, 1)
    monkeypatch.setenv("RANK", "abc")
    with pytest.raises(ValueError, match="RANK='abc' is not an integer"):
        process_ranks()
    with pytest.raises(ValueError, match=r"rank 5 is not in \[0, world size 4\)"):
        process_ranks(5, 4)


def fs_ranks(rank, world, local):
    from dali_relabel.distributed import Ranks

    return Ranks(rank, world, local)
