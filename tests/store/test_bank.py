"""LabelBank / LabelStore.materialize: content, plain .npy files, sharing, atomicity, location choice."""

from __future__ import annotations

import errno
import gc
import json
import os
import types
import warnings

import numpy as np
import pytest
import zarr
from store_util import create_store, fill, start_python

from dali_relabel import LabelBank, LabelStore, fs
from dali_relabel.errors import BankError, StoreWriteError
from dali_relabel.store import bank as bank_module


@pytest.fixture
def store(tmp_path):
    s = create_store(tmp_path / "s.zarr", n=100, block_size=16, class_names=[f"w{i}" for i in range(50)])
    fill(s)
    return LabelStore.open(tmp_path / "s.zarr")


def test_materialize_content_and_files(store, tmp_path):
    bank = store.materialize(tmp_path / "banks", progress=False)
    assert isinstance(bank, LabelBank)
    assert bank.path == tmp_path / "banks" / bank_module.bank_name(store)
    s, c = store.read(slice(None))
    for name, want in (("scores", s), ("classes", c), ("labels", store.labels)):
        got = getattr(bank, name)
        assert isinstance(got, np.memmap) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        # Plain .npy, readable without dali_relabel and without mapping: what the C++ lookup op parses.
        with open(bank.path / f"{name}.npy", "rb") as f:
            assert np.lib.format.read_magic(f) == (1, 0)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            assert (shape, fortran, dtype) == (want.shape, False, want.dtype) and f.tell() % 64 == 0
        np.testing.assert_array_equal(np.load(bank.path / f"{name}.npy"), want)
    assert bank.keys == store.keys.tolist()
    meta = json.loads((bank.path / "bank.json").read_text())
    assert {k: meta[k] for k in ("format", "version", "num_samples", "height", "width", "k", "num_classes",
                                 "classes_dtype", "content_hash")} == {
        "format": "dali_relabel.bank", "version": 2, "num_samples": 100, "height": 6, "width": 5, "k": 3,
        "num_classes": 50, "classes_dtype": "<i2", "content_hash": store.content_hash()}
    assert meta["class_names"][:2] == ["w0", "w1"]
    assert sorted(os.listdir(tmp_path / "banks")) == sorted([bank_module.bank_name(store), f".{bank_module.bank_name(store)}.lock"])


def test_second_materialize_reuses_the_bank(store, tmp_path):
    first = store.materialize(tmp_path / "banks", progress=False)
    stamp = (first.path / "scores.npy").stat().st_mtime_ns
    again = LabelStore.open(store.url).materialize(tmp_path / "banks", progress=False)
    assert again.path == first.path and (again.path / "scores.npy").stat().st_mtime_ns == stamp


def test_same_content_same_bank_different_content_other_bank(store, tmp_path):
    copy = create_store(tmp_path / "copy.zarr", n=100, block_size=16, class_names=[f"w{i}" for i in range(50)])
    fill(copy)
    assert copy.materialize(tmp_path / "banks", progress=False).path == \
        store.materialize(tmp_path / "banks", progress=False).path
    fill(copy, blocks=[2], seed=1)
    other = copy.materialize(tmp_path / "banks", progress=False)
    assert other.path != store.materialize(tmp_path / "banks", progress=False).path
    np.testing.assert_array_equal(other.scores, copy.read(slice(None))[0])


def test_tampered_store_is_refused(store, tmp_path):
    g = zarr.open_group(store.url, mode="r+")
    block = g["scores"][32:48]
    g["scores"][32:48] = block - np.float16(1)  # changed behind the store's back: digest no longer matches
    with pytest.raises(ValueError, match=r"block 2's 'scores' in .* \(object scores/c/2/0/0/0\) or its 'classes' "
                                         r"object \(classes/c/2/0/0/0\) does not match the block's completion digest"):
        LabelStore.open(store.url).materialize(tmp_path / "banks", progress=False)
    assert [p for p in os.listdir(tmp_path / "banks") if not p.endswith(".lock")] == []  # no partial bank left


MATERIALIZER = """
import sys
from store_util import barrier
from dali_relabel import LabelStore
store = LabelStore.open(sys.argv[1])
barrier(sys.argv[3], int(sys.argv[4]), 2)
bank = store.materialize(sys.argv[2], progress=False)
print(bank.path, float(bank.scores.astype("float32").sum()))
"""


def test_two_processes_materializing_at_once_share_one_intact_bank(tmp_path):
    big = create_store(tmp_path / "big.zarr", n=6000, block_size=256)
    fill(big)
    procs = [start_python(MATERIALIZER, big.url, str(tmp_path / "banks"), str(tmp_path / "barrier"), str(i))
             for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out.split())
    assert outs[0] == outs[1]  # the same directory, the same content
    key = bank_module.bank_name(LabelStore.open(big.url))
    assert sorted(os.listdir(tmp_path / "banks")) == sorted([key, f".{key}.lock"])  # one bank, no temp left
    bank = LabelBank.open(tmp_path / "banks" / key)
    np.testing.assert_array_equal(bank.scores, big.read(slice(None))[0])
    assert float(bank.scores.astype("float32").sum()) == float(outs[0][1])


def test_rename_race_without_locks_keeps_one_copy(store, tmp_path):
    """On file systems without flock, two builders may race: the loser drops its copy and maps the winner's."""
    cache = tmp_path / "banks"
    cache.mkdir()
    key = bank_module.bank_name(store)
    a = bank_module._build(store, cache / key, key, progress=False)
    b = bank_module._build(store, cache / key, key, progress=False)
    assert a.path == b.path and sorted(os.listdir(cache)) == [key]


def test_stale_temp_dirs_of_dead_processes_are_removed(store, tmp_path):
    cache = tmp_path / "banks"
    key = bank_module.bank_name(store)
    dead = cache / f".{key}.tmp-{fs._host()}-999999999-abcd1234"
    foreign = cache / f".{key}.tmp-otherhost-1-abcd1234"  # another machine's (shared cache): not ours to judge
    for d in (dead, foreign):
        d.mkdir(parents=True)
        (d / "scores.npy").write_bytes(b"partial")
    store.materialize(cache, progress=False)
    assert not dead.exists() and foreign.exists()


def test_default_location_prefers_shm_when_it_fits(store, tmp_path, monkeypatch):
    shm, cache = tmp_path / "shm" / "dali_relabel", tmp_path / "cache"
    monkeypatch.setattr(bank_module, "SHM_DIR", shm)
    (tmp_path / "shm").mkdir()
    monkeypatch.setenv("DALI_RELABEL_CACHE", str(cache))
    monkeypatch.delenv("DALI_RELABEL_BANK_DIR", raising=False)
    free = {"bytes": 10 << 30}
    monkeypatch.setattr(bank_module, "_free_bytes", lambda path: free["bytes"])
    assert store.materialize(progress=False).path.parent == shm

    fill_other = create_store(tmp_path / "o.zarr", n=20, block_size=16)
    fill(fill_other, seed=3)
    free["bytes"] = 1 << 20  # /dev/shm too small: the user cache dir
    assert fill_other.materialize(progress=False).path.parent == cache / "banks"
    free["bytes"] = 10 << 30  # an existing bank is found where it is, not rebuilt
    assert fill_other.materialize(progress=False).path.parent == cache / "banks"


def test_shm_needs_the_bank_plus_ten_percent_plus_the_margin(store, tmp_path, monkeypatch):
    """/dev/shm is RAM: it is chosen only with 1.1 × the bank + 512 MiB free; one byte less, the cache dir."""
    shm, cache = tmp_path / "shm" / "dali_relabel", tmp_path / "cache"
    monkeypatch.setattr(bank_module, "SHM_DIR", shm)
    (tmp_path / "shm").mkdir()
    monkeypatch.setenv("DALI_RELABEL_CACHE", str(cache))
    monkeypatch.delenv("DALI_RELABEL_BANK_DIR", raising=False)
    # The bank's files: float16 scores and int16 classes per cell, int32 labels per sample.
    nbytes = store.num_samples * store.height * store.width * store.k * (2 + 2) + 4 * store.num_samples
    need = int(np.ceil(nbytes * 1.1)) + (512 << 20)
    free = {"bytes": need - 1}
    monkeypatch.setattr(bank_module, "_free_bytes", lambda path: free["bytes"])
    assert store.materialize(progress=False).path.parent == cache / "banks"
    other = create_store(tmp_path / "o.zarr", n=100, block_size=16, class_names=[f"w{i}" for i in range(50)])
    fill(other, seed=3)
    free["bytes"] = need
    assert other.materialize(progress=False).path.parent == shm


def test_free_space_is_asked_of_the_nearest_existing_directory(tmp_path, monkeypatch):
    """The probe asks the directory itself when it exists, else its closest existing ancestor (not yet
    created bank dirs are the common case); a filesystem that cannot answer counts as full."""
    asked = []

    def statvfs(path):  # as the OS's: no answer for a path that does not exist
        asked.append(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        return types.SimpleNamespace(f_bavail=1000, f_frsize=4096)

    monkeypatch.setattr(bank_module.os, "statvfs", statvfs)
    assert bank_module._free_bytes(tmp_path) == 4096000 and asked == [str(tmp_path)]
    asked.clear()
    assert bank_module._free_bytes(tmp_path / "not" / "yet") == 4096000 and asked == [str(tmp_path)]

    def fails(path):
        raise OSError("statvfs not supported")

    monkeypatch.setattr(bank_module.os, "statvfs", fails)
    assert bank_module._free_bytes(tmp_path) == 0


def test_environment_variable_and_argument_override(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_RELABEL_BANK_DIR", str(tmp_path / "env"))
    assert store.materialize(progress=False).path.parent == tmp_path / "env"
    assert store.materialize(tmp_path / "arg", progress=False).path.parent == tmp_path / "arg"


def test_open_errors(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a label bank"):
        LabelBank.open(tmp_path)
    bank = store.materialize(tmp_path / "banks", progress=False)
    (bank.path / "labels.npy").chmod(0o644)
    np.save(bank.path / "labels.npy", np.zeros(99, np.int32))
    with pytest.raises(BankError, match=rf"the bank {bank.path} is damaged: {bank.path}/labels.npy has 524 bytes, "
                                        r"bank.json records 528 \(truncated or replaced\); LabelStore.materialize\(\) "
                                        r"rebuilds it"):
        LabelBank.open(bank.path)
    with pytest.raises(BankError, match=r"labels.npy holds int32 \(99,\), bank.json says int32 \(100,\): the bank "
                                        r"is damaged; delete"):
        LabelBank.open(bank.path, check="none")  # the arrays' own check
    (bank.path / "bank.json").chmod(0o644)
    meta = json.loads((bank.path / "bank.json").read_text())
    (bank.path / "bank.json").write_text(json.dumps(dict(meta, version=7)))
    with pytest.raises(BankError, match="version 7; expected 'dali_relabel.bank' version 2"):
        LabelBank.open(bank.path)
    (bank.path / "bank.json").write_text(json.dumps(dict(meta, scores_dtype="<f8")))
    with pytest.raises(BankError, match=rf"{bank.path}/bank.json says scores_dtype '<f8'; a bank holds float16 "
                                        r"\('<f2'\) or float32 \('<f4'\) scores"):
        LabelBank.open(bank.path, check="none")
    (bank.path / "bank.json").write_text("{not json")
    with pytest.raises(BankError, match=rf"{bank.path}/bank.json cannot be parsed"):
        LabelBank.open(bank.path)


def test_unreadable_keys_and_an_uncreatable_bank_directory_are_named(store, tmp_path, monkeypatch):
    bank = store.materialize(tmp_path / "banks", progress=False)  # keys.json is read on first use: damage it after
    (bank.path / "keys.json").chmod(0o644)
    (bank.path / "keys.json").write_text("[not json")
    with pytest.raises(BankError, match=rf"LabelBank.keys: {bank.path / 'keys.json'} cannot be read "
                                        r"\(JSONDecodeError: .*\); the bank is damaged"):
        bank.keys
    (bank.path / "keys.json").unlink()
    with pytest.raises(BankError, match=r"keys.json cannot be read \(FileNotFoundError: .*\); the bank is damaged"):
        bank.keys
    # A bank directory that cannot be created (read-only file system: root ignores permission bits, hence the
    # patch) is a StoreWriteError naming it, not a bare OSError.
    read_only = tmp_path / "ro" / "banks"
    mkdir = type(read_only).mkdir

    def refuse(path, *args, **kwargs):
        if path == read_only:
            raise OSError(errno.EROFS, "Read-only file system")
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(type(read_only), "mkdir", refuse)
    with pytest.raises(StoreWriteError, match=rf"cannot create the bank directory {read_only}: read-only file system "
                                              rf"\({read_only}\); choose a writable location"):
        store.materialize(read_only, progress=False)


def test_a_new_bank_is_on_disk_before_it_is_shown_and_close_releases_its_files(store, tmp_path, monkeypatch):
    """Every file of a new bank is fsynced before the directory appears under its name (a machine crash cannot
    leave a visible but incomplete bank); close() gives back the handles open() keeps for check_files."""
    synced = []
    fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    bank = store.materialize(tmp_path / "banks", progress=False)
    monkeypatch.undo()
    assert {"scores.npy", "classes.npy", "labels.npy", "keys.json", "bank.json"} <= set(synced)

    def fds():
        return len(os.listdir("/proc/self/fd"))

    opened = LabelBank.open(bank.path)
    during = fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened.close()
        gc.collect()
    assert during - fds() == 3  # the handles kept on the three .npy files (the mappings keep their own)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # closed, not dropped unclosed


def test_progress_bar_only_when_asked(store, tmp_path, capfd):
    store.materialize(tmp_path / "quiet", progress=False)
    assert capfd.readouterr().err == ""
    store.materialize(tmp_path / "loud", progress=True)
    err = capfd.readouterr().err
    assert f"materializing {store.url}" in err and "100/100" in err


def test_open_check_levels_read_what_they_say(tmp_path):
    """check="sampled" reads 64 windows per file, "full" every byte, "none" nothing: a byte changed between two
    windows of a large file is seen by "full" only (each level checks what it names, not another)."""
    store = create_store(tmp_path / "s.zarr", n=3000, block_size=512)
    fill(store)
    bank = store.materialize(tmp_path / "banks", progress=False)
    scores = bank.path / "scores.npy"
    window, windows = bank_module.SAMPLE_WINDOW_BYTES, bank_module.SAMPLE_WINDOWS
    starts = [round(i * (scores.stat().st_size - window) / (windows - 1)) for i in range(windows)]
    gap = next(s + window + 10 for s, t in zip(starts, starts[1:]) if t - s > window + 20)  # in no window
    scores.chmod(0o644)
    with open(scores, "r+b") as f:
        f.seek(gap)
        byte = f.read(1)[0]
        f.seek(gap)
        f.write(bytes([byte ^ 0xFF]))
    LabelBank.open(bank.path)  # sampled (the default): the changed byte is in no window
    LabelBank.open(bank.path, check="sampled")
    LabelBank.open(bank.path, check="none")
    with pytest.raises(BankError, match=rf"{scores} does not match its recorded digest \(modified after it was "
                                        r"built\)"):
        LabelBank.open(bank.path, check="full")
    with pytest.raises(ValueError, match="check"):
        LabelBank.open(bank.path, check="fast")


def test_lookup_serves_the_materialized_store(store, tmp_path):
    """fn.relabel.lookup (CPU) on the bank returns exactly the store's rows."""
    from nvidia.dali import fn, pipeline_def, types

    bank = store.materialize(tmp_path / "banks", progress=False)
    rows = np.array([99, 0, 17, 17, 64], np.int32)

    @pipeline_def(batch_size=len(rows), num_threads=1, device_id=None)
    def pipe():
        index = fn.external_source(source=lambda: [np.array([r], np.int32) for r in rows], dtype=types.INT32,
                                   batch=True)
        return tuple(fn.relabel.lookup(index=index, bank=str(bank.path)))

    p = pipe()
    p.build()
    scores, classes, labels = (np.stack([np.array(t[i]) for i in range(len(rows))]) for t in p.run())
    want_s, want_c = store.read(rows)
    np.testing.assert_array_equal(scores, want_s)
    np.testing.assert_array_equal(classes, want_c)
    np.testing.assert_array_equal(labels.reshape(-1), store.labels[rows])


def test_banks_of_other_bank_versions(store, tmp_path):
    """Two installs of different versions share /dev/shm. CI once failed 57 tests because an install of the next
    bank version had built its bank under the same name (the content hash alone): this one refused it as 'version
    2; expected version 1'. The name now carries the bank version: a newer install's bank of the same store is
    left alone, an older install's one (an upgrade leftover holding RAM) is removed."""
    cache = tmp_path / "banks"
    source = bank_module.store_source(store)

    def fake(version):
        d = cache / f"{store.content_hash()}.v{version}"
        d.mkdir(parents=True)
        (d / "bank.json").write_text(json.dumps({"format": bank_module.BANK_FORMAT, "version": version,
                                                 "source_id": source}))
        return d

    newer, older = fake(bank_module.BANK_VERSION + 1), fake(bank_module.BANK_VERSION - 1)
    bank = store.materialize(cache, progress=False)
    assert bank.path.name == f"{store.content_hash()}.v{bank_module.BANK_VERSION}"
    np.testing.assert_array_equal(bank.scores, store.read(slice(None))[0])
    assert json.loads((newer / "bank.json").read_text())["version"] == bank_module.BANK_VERSION + 1  # untouched
    assert not older.exists()
