"""LabelStore: round trips, reads, keys, validation, resume, crash safety, concurrent writers, portability."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
import zarr
from store_util import GEOMETRY, block_data, create_store, fill, keys_for, run_python, start_python, tree_bytes

from dali_relabel import LabelStore
from dali_relabel.errors import InvalidArgument, StoreDamagedError
from dali_relabel.testing.synthetic import synthetic_label_maps


def expected(n: int, seed: int = 0, **geometry):
    g = dict(GEOMETRY, **geometry)
    return synthetic_label_maps(n, height=g["height"], width=g["width"], k=g["k"], num_classes=g["num_classes"],
                                seed=seed)


@pytest.mark.parametrize("scheme", ["path", "file", "memory"])
def test_round_trip(tmp_path, scheme):
    url = {"path": str(tmp_path / "s.zarr"), "file": f"file://{tmp_path}/s.zarr",
           "memory": f"memory://{uuid.uuid4().hex}/s.zarr"}[scheme]
    store = create_store(url, n=100, block_size=16, class_names=[f"c{i}" for i in range(50)])
    assert store.num_blocks == 7 and list(store.block_rows(6)) == list(range(96, 100))
    assert not store.completed_blocks().any() and not store.is_complete
    fill(store)
    ref_s, ref_c = expected(100)
    opened = LabelStore.open(url)
    assert opened.mode == "r" and opened.is_complete
    assert (opened.num_samples, opened.height, opened.width, opened.k, opened.num_classes) == (100, 6, 5, 3, 50)
    s, c = opened.read(slice(None))
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(c, ref_c)
    assert s.dtype == np.float16 and c.dtype == np.int16
    assert opened.keys.tolist() == keys_for(100)
    np.testing.assert_array_equal(opened.labels, np.arange(100) % 4)
    assert opened.class_names == [f"c{i}" for i in range(50)]
    assert opened.annotator == {"model": "synthetic", "input_size": 64}


def test_read_forms(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=100, block_size=16)
    fill(store)
    ref_s, ref_c = expected(100)
    s, c = store.read(37)
    assert s.shape == (6, 5, 3)
    np.testing.assert_array_equal(s, ref_s[37])
    np.testing.assert_array_equal(store.read(-1)[1], ref_c[99])
    rows = np.array([99, 3, 3, 50, 0, -2])
    s, c = store.read(rows)
    np.testing.assert_array_equal(s, ref_s[rows])
    np.testing.assert_array_equal(c, ref_c[rows])
    np.testing.assert_array_equal(store.read(slice(90, 10, -7))[0], ref_s[90:10:-7])
    np.testing.assert_array_equal(store.read(slice(20, 40))[1], ref_c[20:40])
    assert store.read(slice(5, 5))[0].shape == (0, 6, 5, 3)
    assert store.read(np.array([], np.int64))[1].shape == (0, 6, 5, 3)
    with pytest.raises(IndexError, match="row 100 out of range for a store of 100 samples"):
        store.read(100)
    with pytest.raises(IndexError, match="row -101 out of range"):
        store.read(np.array([0, -101]))
    with pytest.raises(IndexError, match="row 100 out of range"):  # the first bad row is named
        store.read(np.array([5, 100, 7, 250]))


def test_keys_lookup(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=30)
    keys = keys_for(30)
    assert store.row_of(keys[17]) == 17
    np.testing.assert_array_equal(store.rows_of([keys[3], keys[29], keys[3]]), [3, 29, 3])
    with pytest.raises(KeyError, match=r"1 key\(s\) not in label store .*'n00/nope.JPEG'"):
        store.row_of("n00/nope.JPEG")
    with pytest.raises(KeyError, match=r"12 key\(s\) .* and 2 more"):
        store.rows_of([f"x{i}.png" for i in range(12)])


def test_unicode_keys_round_trip(tmp_path):
    keys = ["n01/é.jpg", "日本/画像.png", "a/b/c/d.JPEG", "x.jpg"]
    store = LabelStore.create(tmp_path / "s.zarr", keys=keys, **GEOMETRY)
    assert LabelStore.open(tmp_path / "s.zarr").keys.tolist() == keys
    assert store.row_of("日本/画像.png") == 1


def test_int32_classes_beyond_int16(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", keys=["a.jpg", "b.jpg"], num_classes=40000, height=2, width=2,
                              k=2, block_size=2)
    c = np.array([39999, 0, 35000, 1] * 4).reshape(2, 2, 2, 2)
    s = np.tile(np.array([2.0, 1.0], np.float32), (2, 2, 2, 1))
    store.write_block(0, s, c)
    out_s, out_c = store.read(slice(None))
    assert out_c.dtype == np.int32
    np.testing.assert_array_equal(out_c, c)


@pytest.mark.parametrize("num_classes,stored", [(32768, "int16"), (32769, "int32")])
def test_class_dtype_is_int16_exactly_while_every_class_fits(tmp_path, num_classes, stored):
    """Classes lie in [0, C): int16 (max 32767) holds them up to C = 32768; from C = 32769 on, int32."""
    store = LabelStore.create(tmp_path / "s.zarr", keys=["a.jpg"], num_classes=num_classes, height=1, width=2, k=2,
                              block_size=1)
    top = num_classes - 1  # the largest class index, 32767 or 32768
    c = np.array([[[[top, 0], [1, top - 1]]]])
    s = np.array([[[[3.0, 1.0], [2.0, -1.0]]]], np.float32)
    store.write_block(0, s, c)
    assert zarr.open_group(tmp_path / "s.zarr", mode="r")["classes"].dtype == np.dtype(stored)
    out_c = LabelStore.open(tmp_path / "s.zarr").read(0)[1]
    assert out_c.dtype == np.dtype(stored)
    np.testing.assert_array_equal(out_c, c[0])  # 32768 round-trips (int16 would wrap it to -32768)


def test_k_may_equal_num_classes(tmp_path):
    """Every class in every cell (k == C) is a valid store; only k > C is refused."""
    store = LabelStore.create(tmp_path / "s.zarr", keys=["a.jpg", "b.jpg"], num_classes=3, height=2, width=1, k=3,
                              block_size=2)
    c = np.broadcast_to(np.array([2, 0, 1]), (2, 2, 1, 3))
    s = np.broadcast_to(np.array([1.5, 0.5, -0.5], np.float32), (2, 2, 1, 3))
    store.write_block(0, s, c)
    out_s, out_c = LabelStore.open(tmp_path / "s.zarr").read(slice(None))
    np.testing.assert_array_equal(out_c, c)
    np.testing.assert_array_equal(out_s, s)


def test_rewriting_a_block_that_was_read_reads_the_new_values(tmp_path):
    """A read keeps the decoded block; writing that block again must not leave the old values served."""
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    fill(store)
    old_s, old_c = expected(40)
    np.testing.assert_array_equal(store.read(20)[0], old_s[20])  # block 1 decoded and kept
    new_s, new_c = block_data(store, 1, seed=7)
    assert not np.array_equal(new_c[4], old_c[20])  # the rewrite changes row 20
    store.write_block(1, new_s, new_c)
    s, c = store.read(20)
    np.testing.assert_array_equal(c, new_c[4])
    np.testing.assert_array_equal(s, new_s[4].astype(np.float16))
    np.testing.assert_array_equal(store.read_block(1)[1], new_c)
    np.testing.assert_array_equal(store.read(3)[1], old_c[3])  # the other blocks are unchanged


def test_a_directory_whose_zarr_json_cannot_be_read_is_not_written_into(tmp_path, monkeypatch):
    """A zarr.json that cannot be read (an I/O or permission error; root reads through chmod, hence the patch) or
    parsed makes the directory someone else's: create refuses it, names it, and writes nothing."""
    from dali_relabel.errors import StoreExistsError

    user = tmp_path / "theirs"
    user.mkdir()
    (user / "zarr.json").write_text('{"node_type": "group", "attributes": {}}')
    read_text = type(user).read_text

    def unreadable(path, *args, **kwargs):
        if path == user / "zarr.json":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(type(user), "read_text", unreadable)
    with pytest.raises(StoreExistsError, match=rf"{user} is a directory that is not a label store \(it holds "
                                               r"'zarr.json'\); nothing was written"):
        create_store(user, exist_ok=True)
    monkeypatch.undo()
    (user / "zarr.json").write_text("{not json")
    with pytest.raises(StoreExistsError, match=rf"{user} is a directory that is not a label store"):
        create_store(user, exist_ok=True)
    assert sorted(os.listdir(user)) == ["zarr.json"] and (user / "zarr.json").read_text() == "{not json"
    (user / "zarr.json").write_text('{"node_type": "group", "attributes": {}}')  # readable: an interrupted creation
    assert create_store(user, n=20, exist_ok=True).num_samples == 20


def test_a_complete_block_missing_its_object_or_holding_fill_values_is_damaged(tmp_path):
    """A block marked complete whose chunk object is gone (or holds the fill values NaN / -1, as after a foreign
    writer) is damaged, said as such, with or without the digest check (verify reads without it)."""
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    fill(store)
    (tmp_path / "s.zarr" / store.object_key("scores", 1)).unlink()
    for check in (True, False):
        with pytest.raises(StoreDamagedError, match=r"block 1's 'scores' .* \(object scores/c/1/0/0/0\) is missing "
                                                    r"although the block is marked complete: the store is damaged"):
            LabelStore.open(tmp_path / "s.zarr").read_block(1, check_digest=check)
    zarr.open_group(tmp_path / "s.zarr", mode="r+")["classes"][33, 0, 0] = -1  # block 2, behind the store's back
    for check in (True, False):
        with pytest.raises(StoreDamagedError, match=r"block 2's 'classes' .* holds fill values \(NaN scores / class "
                                                    r"-1\) although the block is marked complete"):
            LabelStore.open(tmp_path / "s.zarr").read_block(2, check_digest=check)
    np.testing.assert_array_equal(LabelStore.open(tmp_path / "s.zarr").read_block(0)[1], expected(40)[1][:16])


def test_reading_an_incomplete_block_fails(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=100, block_size=16)
    fill(store, blocks=[0, 2])
    np.testing.assert_array_equal(store.completed_blocks(), [1, 0, 1, 0, 0, 0, 0])
    store.read(slice(0, 16))
    store.read(np.array([40, 3]))
    with pytest.raises(ValueError, match=r"block 1, rows 16\.\.31\); finish writing"):
        store.read(20)
    with pytest.raises(ValueError, match="not completely written"):
        store.read(slice(10, 40))
    with pytest.raises(ValueError, match=r"incomplete: 5 of 7 blocks not written \(first: \[1, 3, 4, 5, 6\]\)"):
        store.materialize(tmp_path / "banks", progress=False)


# ---------------------------------------------------------------------------------------------- validation
def test_write_block_validation(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    s, c = block_data(store, 1)
    with pytest.raises(ValueError, match=r"scores has shape \(15, 6, 5, 3\), expected \(16, 6, 5, 3\) "
                                         r"\(rows 16\.\.31"):
        store.write_block(1, s[:15], c)
    with pytest.raises(ValueError, match=r"shape \(16, 6, 5, 3\), expected \(8, 6, 5, 3\)"):
        store.write_block(2, s, c)  # the last block has 8 rows
    with pytest.raises(IndexError, match=r"block 3 out of range \[0, 3\)"):
        store.write_block(3, s, c)
    bad = s.copy()
    bad[4, 2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"row 20 \(key 'n00/img_00020.JPEG'\), cell \(y=2, x=1\): score nan is "
                                         r"not finite .*store finite logits"):
        store.write_block(1, bad, c)
    with pytest.raises(ValueError, match=r"row 16 .*score 1000000.0 is outside the float16 range"):
        store.write_block(1, np.where(np.arange(16)[:, None, None, None] == 0, 1e6, s.astype(np.float32)), c)
    bad = c.copy()
    bad[0, 0, 0, 2] = 50
    with pytest.raises(ValueError, match=r"row 16 .*class 50 outside \[0, 50\).*; check num_classes"):
        store.write_block(1, s, bad)
    bad = c.copy()
    bad[3, 5, 4, 1] = bad[3, 5, 4, 0]
    with pytest.raises(ValueError, match=r"row 19 .*cell \(y=5, x=4\): a class appears twice in one cell"):
        store.write_block(1, s, bad)
    with pytest.raises(ValueError, match=r"row 16 .*not sorted in descending order.*np.argsort"):
        store.write_block(1, s[..., ::-1], c[..., ::-1])
    with pytest.raises(ValueError, match="classes must be integers"):
        store.write_block(1, s, c.astype(np.float32))
    assert not store.completed_blocks().any()  # nothing invalid was marked complete
    with pytest.raises(PermissionError, match="open read-only; open it with mode='r\\+'"):
        LabelStore.open(tmp_path / "s.zarr").write_block(1, s, c)


def test_create_validation(tmp_path):
    url = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match=r"1 duplicate key\(s\), e.g. \['a.jpg'\]"):
        LabelStore.create(url, keys=["a.jpg", "b.jpg", "a.jpg"], **GEOMETRY)
    with pytest.raises(ValueError, match=r"keys\[1\] = '/abs.jpg' is an absolute path"):
        LabelStore.create(url, keys=["a.jpg", "/abs.jpg"], **GEOMETRY)
    with pytest.raises(ValueError, match=r"keys\[0\] = '' is not a non-empty string"):
        LabelStore.create(url, keys=[""], **GEOMETRY)
    with pytest.raises(ValueError, match=r"keys=\[\]: must not be empty"):
        LabelStore.create(url, keys=[], **GEOMETRY)
    with pytest.raises(ValueError, match=r"labels\[1\] = 50 outside \[-1, 50\)"):
        LabelStore.create(url, keys=["a.jpg", "b.jpg"], labels=[0, 50], **GEOMETRY)
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        LabelStore.create(url, keys=["a.jpg", "b.jpg"], labels=[0], **GEOMETRY)
    with pytest.raises(ValueError, match=r"k=51: cannot exceed num_classes \(50\)"):
        LabelStore.create(url, keys=["a.jpg"], **dict(GEOMETRY, k=51))
    with pytest.raises(InvalidArgument, match="block_size=0: must be an integer >= 1") as info:
        LabelStore.create(url, keys=["a.jpg"], block_size=0, **GEOMETRY)
    assert info.value.argument == "block_size" and info.value.value == 0  # what the CLI maps to its flag
    with pytest.raises(ValueError, match="class_names=.*must hold num_classes=50 names"):
        LabelStore.create(url, keys=["a.jpg"], class_names=["a", "b", "c"], **GEOMETRY)
    with pytest.raises(ValueError, match="annotator=.*must be JSON-serialisable"):
        LabelStore.create(url, keys=["a.jpg"], annotator={"f": object()}, **GEOMETRY)
    assert not url.exists()  # no failed call left a half store behind


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"no label store at {tmp_path / 'none.zarr'} \(no such file or "
                                                r"directory\)"):
        LabelStore.open(tmp_path / "none.zarr")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"file.zarr \(a file, not a store directory\)"):
        LabelStore.open(tmp_path / "file.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match=r"plain \(a directory without zarr.json\)"):
        LabelStore.open(tmp_path / "plain")
    bank = create_store(tmp_path / "b.zarr", n=10)
    fill(bank)
    bank = bank.materialize(tmp_path / "banks", progress=False)
    with pytest.raises(FileNotFoundError, match=rf"no label store at {bank.path} \(a serving bank directory, made "
                                                r"from a store; `dali-relabel verify` checks banks\)"):
        LabelStore.open(bank.path)  # a bank is not a store: said so
    zarr.open_group(tmp_path / "other.zarr", mode="w", attributes={"something": 1})
    with pytest.raises(ValueError, match="not a complete label store .*exist_ok=True"):
        LabelStore.open(tmp_path / "other.zarr")
    with pytest.raises(ValueError, match="mode='w': must be 'r' or 'r\\+'"):
        LabelStore.open(tmp_path / "other.zarr", mode="w")
    create_store(tmp_path / "s.zarr", n=10)
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    g.attrs["format_version"] = 99
    with pytest.raises(ValueError, match=r"format version 99, this dali_relabel reads versions 1, 2"):
        LabelStore.open(tmp_path / "s.zarr")


def test_exist_ok_resume_and_mismatch(tmp_path):
    url = tmp_path / "s.zarr"
    store = create_store(url, n=50, block_size=16)
    fill(store, blocks=[0, 3])
    with pytest.raises(FileExistsError, match="already exists .*exist_ok=True"):
        create_store(url, n=50, block_size=16)
    resumed = create_store(url, n=50, block_size=16, exist_ok=True)
    assert resumed.mode == "r+"
    np.testing.assert_array_equal(resumed.completed_blocks(), [1, 0, 0, 1])
    with pytest.raises(ValueError, match=r"differs in block_size \(block_size: existing 16, requested 8\)"):
        create_store(url, n=50, block_size=8, exist_ok=True)
    with pytest.raises(ValueError, match=r"differs in num_samples, keys"):
        create_store(url, n=51, block_size=16, exist_ok=True)
    with pytest.raises(ValueError, match=r"differs in k, num_classes "):
        create_store(url, n=50, block_size=16, exist_ok=True, num_classes=60, k=4)
    with pytest.raises(ValueError, match=r"differs in annotator \(annotator: existing \{'model': 'synthetic'"):
        create_store(url, n=50, block_size=16, exist_ok=True, annotator={"model": "other"})
    with pytest.raises(ValueError, match=r"differs in keys"):
        create_store(url, n=50, block_size=16, exist_ok=True, keys=keys_for(49) + ["other.jpg"])
    with pytest.raises(ValueError, match=r"differs in labels"):
        create_store(url, n=50, block_size=16, exist_ok=True, labels=np.zeros(50, int))
    np.testing.assert_array_equal(LabelStore.open(url).completed_blocks(), [1, 0, 0, 1])  # untouched


def test_interrupted_creation_is_detected_and_finished(tmp_path):
    url = tmp_path / "s.zarr"
    g = zarr.open_group(url, mode="w")  # a creation that died after its first step
    g.create_array("scores", shape=(50, 6, 5, 3), chunks=(16, 6, 5, 3), dtype="f2")
    with pytest.raises(ValueError, match="not a complete label store"):
        LabelStore.open(url)
    with pytest.raises(FileExistsError, match="not a complete label store .*exist_ok=True to finish it"):
        create_store(url, n=50, block_size=16)
    store = create_store(url, n=50, block_size=16, exist_ok=True)
    fill(store)
    np.testing.assert_array_equal(LabelStore.open(url).read(slice(None))[0], expected(50)[0])


# ---------------------------------------------------------------------------------------------- crash safety
CRASHING_WRITER = """
import os, sys
from store_util import create_store, fill
from dali_relabel.store import LabelStore

crash_block = int(sys.argv[2])
real = LabelStore._fsync_chunks
def crash(self, block):
    real(self, block)
    if block == crash_block:
        os._exit(17)  # the data objects are written, the completion marker is not
LabelStore._fsync_chunks = crash
store = create_store(sys.argv[1], n=100, block_size=16, exist_ok=True)
fill(store)
"""


def test_crash_mid_write_then_resume_gives_an_identical_store(tmp_path):
    reference = create_store(tmp_path / "ref.zarr", n=100, block_size=16)
    fill(reference)
    url = tmp_path / "s.zarr"
    proc = run_python(CRASHING_WRITER, str(url), "3", check=False)
    assert proc.returncode == 17, proc.stderr
    crashed = LabelStore.open(url)
    np.testing.assert_array_equal(crashed.completed_blocks(), [1, 1, 1, 0, 0, 0, 0])
    assert not crashed.is_complete
    with pytest.raises(ValueError, match="block 3"):
        crashed.read(50)
    # A torn data object (a store without atomic writes, or a machine crash) is not taken as complete either.
    torn = url / "scores" / "c" / "4" / "0" / "0" / "0"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"\x00garbage")
    assert not LabelStore.open(url).completed_blocks()[4]

    resumed = create_store(url, n=100, block_size=16, exist_ok=True)
    todo = np.nonzero(~resumed.completed_blocks())[0]
    np.testing.assert_array_equal(todo, [3, 4, 5, 6])
    fill(resumed, blocks=todo)
    assert resumed.is_complete
    assert tree_bytes(url) == tree_bytes(tmp_path / "ref.zarr")  # byte for byte, metadata included
    assert LabelStore.open(url).content_hash() == LabelStore.open(tmp_path / "ref.zarr").content_hash()


def test_damaged_marker_counts_as_incomplete(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=64, block_size=16)
    fill(store)
    (tmp_path / "s.zarr" / "block_digests" / "c" / "2" / "0").write_bytes(b"")  # e.g. power loss
    np.testing.assert_array_equal(LabelStore.open(tmp_path / "s.zarr").completed_blocks(), [1, 1, 0, 1])


CONCURRENT_WRITER = """
import sys
from store_util import barrier, create_store, fill
url, parity = sys.argv[1], int(sys.argv[2])
store = create_store(url, n=300, block_size=10, exist_ok=True)
barrier(sys.argv[3], parity, 2)
fill(store, blocks=range(parity, store.num_blocks, 2))
print(int(store.completed_blocks().sum()))
"""


def test_two_processes_write_disjoint_blocks_concurrently(tmp_path):
    url = tmp_path / "s.zarr"
    create_store(url, n=300, block_size=10)
    procs = [start_python(CONCURRENT_WRITER, str(url), str(p), str(tmp_path / "barrier")) for p in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = LabelStore.open(url)
    assert store.is_complete
    s, c = store.read(slice(None))
    ref_s, ref_c = expected(300)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(c, ref_c)


# ---------------------------------------------------------------------------------------------- identity, format
def test_content_hash_follows_the_content(tmp_path):
    a, b = create_store(tmp_path / "a.zarr", n=40), create_store(tmp_path / "b.zarr", n=40)
    fill(a)
    with pytest.raises(ValueError, match="incomplete"):
        b.content_hash()
    fill(b)
    assert a.content_hash() == b.content_hash()
    fill(b, blocks=[1], seed=5)  # rewriting a block replaces its digest
    assert b.is_complete and a.content_hash() != b.content_hash()


def test_readable_as_plain_zarr(tmp_path):
    """Any zarr v3 reader sees the documented arrays and attributes (docs/FORMAT.md)."""
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16, class_names=[f"w{i}" for i in range(50)])
    fill(store)
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    ref_s, ref_c = expected(40)
    np.testing.assert_array_equal(g["scores"][...], ref_s)
    np.testing.assert_array_equal(g["classes"][...], ref_c)
    np.testing.assert_array_equal(g["labels"][...], np.arange(40) % 4)
    raw = g["keys"][...]
    assert raw.dtype == np.uint8
    assert [bytes(r).rstrip(b"\0").decode() for r in raw] == keys_for(40)
    assert g["block_digests"][...].any(axis=1).all() and g["block_digests"].shape == (3, 32)
    attrs = dict(g.attrs)
    for name, value in {"format": "dali_relabel.label_store", "format_version": 2, "num_samples": 40, "height": 6,
                        "width": 5, "k": 3, "num_classes": 50, "values": "logits", "block_size": 16,
                        "num_blocks": 3}.items():
        assert attrs[name] == value, name
    assert attrs["class_names"][:2] == ["w0", "w1"] and attrs["annotator"]["model"] == "synthetic"
    assert attrs["completeness"]["array"] == "block_digests"
    meta = json.loads((tmp_path / "s.zarr" / "scores" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["transpose", "bytes", "blosc"]
    assert meta["codecs"][0]["configuration"]["order"] == [0, 3, 1, 2]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [16, 6, 5, 3]
    core_types = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                  "float32", "float64"}
    core_codecs = {"transpose", "bytes", "blosc", "zstd", "gzip", "crc32c", "sharding_indexed"}
    for name in ("scores", "classes", "labels", "keys", "block_digests"):  # what every zarr v3 reader supports
        meta = json.loads((tmp_path / "s.zarr" / name / "zarr.json").read_text())
        assert meta["data_type"] in core_types, name
        assert {c["name"] for c in meta["codecs"]} <= core_codecs, name
        assert meta["chunk_key_encoding"]["name"] == "default", name
    # The codec chains docs/FORMAT.md specifies, configuration included (a reader needs none of the levels, but
    # the sizes FORMAT.md reports were measured with exactly these).
    chains = {"scores": [("transpose", {"order": [0, 3, 1, 2]}), ("bytes", {"endian": "little"}),
                         ("blosc", {"typesize": 2, "cname": "zstd", "clevel": 5, "shuffle": "shuffle"})],
              "classes": [("bytes", {"endian": "little"}),
                          ("blosc", {"typesize": 2, "cname": "zstd", "clevel": 3, "shuffle": "noshuffle"})],
              "labels": [("bytes", {"endian": "little"}), ("zstd", {"level": 5})],
              "keys": [("bytes", {}), ("zstd", {"level": 5})]}
    for name, chain in chains.items():
        codecs = json.loads((tmp_path / "s.zarr" / name / "zarr.json").read_text())["codecs"]
        assert [c["name"] for c in codecs] == [c for c, _ in chain], name
        for codec, (_, config) in zip(codecs, chain):
            assert {k: codec.get("configuration", {}).get(k) for k in config} == config, (name, codec)
    unwritten = create_store(tmp_path / "u.zarr", n=20)
    assert np.isnan(zarr.open_group(tmp_path / "u.zarr")["scores"][0]).all()  # unwritten data reads as NaN
    assert (zarr.open_group(tmp_path / "u.zarr")["classes"][0] == -1).all()
    assert unwritten.nbytes_stored()["scores"] < 2000  # no chunk objects until written
