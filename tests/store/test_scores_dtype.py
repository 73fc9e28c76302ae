"""The store's scores dtype: float16 (default, the format as it always was) or float32 (lossless), through the
store, the bank, fn.relabel.lookup and `dali-relabel info`; stores and banks written before stay readable."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import zarr
from nvidia.dali import fn, pipeline_def
from store_util import GEOMETRY, create_store, fill, keys_for

from dali_relabel import LabelBank, LabelStore
from dali_relabel.cli import main
from dali_relabel.testing.synthetic import synthetic_label_maps


def float32_maps(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic maps with float32 logits that float16 cannot hold (a float32 release's)."""
    s, c = synthetic_label_maps(n, height=GEOMETRY["height"], width=GEOMETRY["width"], k=GEOMETRY["k"],
                                num_classes=GEOMETRY["num_classes"], seed=seed)
    jitter = np.random.default_rng(seed).uniform(0, 1e-3, s.shape[:-1] + (1,)).astype(np.float32)
    s32 = s.astype(np.float32) + jitter  # the same jitter along K: still non-increasing
    assert (s32.astype(np.float16).astype(np.float32) != s32).mean() > 0.9
    return s32, c


def write_float32_store(url, n: int = 40, block_size: int = 16) -> tuple[LabelStore, np.ndarray, np.ndarray]:
    store = create_store(url, n=n, block_size=block_size, scores_dtype="float32")
    s, c = float32_maps(n)
    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, s[r.start:r.stop], c[r.start:r.stop])
    return store, s, c


def test_float32_store_keeps_every_bit(tmp_path):
    store, s, c = write_float32_store(tmp_path / "s.zarr")
    opened = LabelStore.open(tmp_path / "s.zarr")
    assert opened.scores_dtype == "float32" and opened.is_complete
    got_s, got_c = opened.read(slice(None))
    assert got_s.dtype == np.float32
    np.testing.assert_array_equal(got_s.view(np.uint32), s.view(np.uint32))
    np.testing.assert_array_equal(got_c, c)
    np.testing.assert_array_equal(opened.read(np.array([7, 3, 7]))[0], s[[7, 3, 7]])
    # As plain zarr: a float32 array, and the format version that float16-only readers refuse.
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g["scores"].dtype == np.float32
    assert g.attrs["scores_dtype"] == "float32" and g.attrs["format_version"] == 2


def test_float16_default_is_the_format_it_always_was(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    s32, c = float32_maps(40)
    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, s32[r.start:r.stop], c[r.start:r.stop])
    got = LabelStore.open(tmp_path / "s.zarr").read(slice(None))[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, s32.astype(np.float16))  # rounded to nearest, as before
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    # Version 2 since stores carry their identity (docs/FORMAT.md); the data are float16 as they always were.
    assert g["scores"].dtype == np.float16 and g.attrs["format_version"] == 2


def test_a_store_written_before_the_choice_existed_reads_as_float16(tmp_path):
    """Stores written before scores_dtype existed: version 1, no scores_dtype attribute, float16 array."""
    store = create_store(tmp_path / "old.zarr", n=40, block_size=16)
    fill(store)
    g = zarr.open_group(tmp_path / "old.zarr", mode="r+")
    attrs = dict(g.attrs)
    del attrs["scores_dtype"]
    g.attrs.put(attrs)  # exactly the attributes the earlier writer wrote
    old = LabelStore.open(tmp_path / "old.zarr")
    assert old.scores_dtype == "float16"
    s, c = old.read(slice(None))
    ref = synthetic_label_maps(40, **{k: GEOMETRY[k] for k in ("height", "width", "k", "num_classes")})
    np.testing.assert_array_equal(s, ref[0])
    # Its bank name is what the earlier code computed (so existing banks are found, not rebuilt).
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"format": "dali_relabel.label_store", "version": 1, "n": 40, "h": 6, "w": 5, "k": 3,
                         "c": 50, "block_size": 16, "classes": "<i2"}).encode())
    h.update(old.block_digests().tobytes())
    h.update(np.ascontiguousarray(old.labels, "<i4").tobytes())
    h.update("\0".join(keys_for(40)).encode("utf-8"))
    assert old.content_hash() == h.hexdigest()
    bank = old.materialize(tmp_path / "banks", progress=False)
    assert bank.scores.dtype == np.float16 and bank.scores_dtype == "float16"
    # The earlier code resumes it too (scores_dtype float16 is the identity it had).
    again = create_store(tmp_path / "old.zarr", n=40, block_size=16, exist_ok=True)
    assert again.scores_dtype == "float16"


def test_a_bank_written_before_float32_existed_opens(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=20, block_size=16)
    fill(store)
    bank = store.materialize(tmp_path / "banks", progress=False)
    meta = json.loads((bank.path / "bank.json").read_text())
    assert meta["scores_dtype"] == "<f2"  # what earlier banks recorded as well
    del meta["scores_dtype"]
    (bank.path / "bank.json").write_text(json.dumps(meta))
    assert LabelBank.open(bank.path).scores.dtype == np.float16


def test_float32_store_and_float16_store_are_different_stores(tmp_path):
    fill(create_store(tmp_path / "a.zarr", n=20, block_size=16))
    with pytest.raises(ValueError, match=r"differs in scores_dtype \(scores_dtype: existing 'float16', requested "
                                         r"'float32'\)"):
        create_store(tmp_path / "a.zarr", n=20, block_size=16, scores_dtype="float32", exist_ok=True)
    with pytest.raises(ValueError, match=r"scores_dtype='bfloat16': must be one of \['float16', 'float32'\]"):
        create_store(tmp_path / "b.zarr", n=20, scores_dtype="bfloat16")


def test_inconsistent_metadata_is_refused(tmp_path):
    fill(create_store(tmp_path / "s.zarr", n=20, block_size=16))
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    g.attrs["scores_dtype"] = "float32"
    with pytest.raises(ValueError, match=r"says scores_dtype='float32' \(format version 2\) but its scores array is "
                                         r"float16: the store's metadata is inconsistent"):
        LabelStore.open(tmp_path / "s.zarr")
    store, _, _ = write_float32_store(tmp_path / "f.zarr")
    g = zarr.open_group(tmp_path / "f.zarr", mode="r+")
    g.attrs["format_version"] = 1  # a float32 store must carry the version float16-only readers refuse
    with pytest.raises(ValueError, match="inconsistent"):
        LabelStore.open(tmp_path / "f.zarr")


def test_write_block_range_follows_the_dtype(tmp_path):
    big = np.full((16, 6, 5, 3), 70000.0, np.float64)  # beyond float16's 65504, fine in float32
    classes = np.broadcast_to(np.arange(3), big.shape)
    f16 = create_store(tmp_path / "a.zarr", n=16, block_size=16)
    with pytest.raises(ValueError, match="score 70000.0 is outside the float16 range"):
        f16.write_block(0, big, classes)
    f32 = create_store(tmp_path / "b.zarr", n=16, block_size=16, scores_dtype="float32")
    f32.write_block(0, big, classes)
    assert f32.read(0)[0].max() == 70000.0
    with pytest.raises(ValueError, match=r"score 1e\+39 is outside the float32 range"):
        f32.write_block(0, np.full_like(big, 1e39), classes)
    with pytest.raises(ValueError, match="score inf is not finite"):
        f32.write_block(0, np.full_like(big, np.inf), classes)


def test_float32_bank_and_lookup_serve_the_exact_logits(tmp_path):
    store, s, c = write_float32_store(tmp_path / "s.zarr")
    bank = LabelStore.open(tmp_path / "s.zarr").materialize(tmp_path / "banks", progress=False)
    assert bank.scores.dtype == np.float32 and bank.scores_dtype == "float32"
    assert json.loads((bank.path / "bank.json").read_text())["scores_dtype"] == "<f4"
    np.testing.assert_array_equal(bank.scores.view(np.uint32), s.view(np.uint32))
    assert LabelBank.open(bank.path).scores.dtype == np.float32
    # A float16 store of the same maps is another bank.
    f16 = create_store(tmp_path / "h.zarr", n=40, block_size=16)
    for b in range(f16.num_blocks):
        r = f16.block_rows(b)
        f16.write_block(b, s[r.start:r.stop], c[r.start:r.stop])
    assert f16.content_hash() != store.content_hash()

    rows = [0, 39, 5, 5, 17]

    @pipeline_def(batch_size=len(rows), num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                  exec_pipelined=False)
    def pipe():
        index = fn.external_source(name="index")
        return tuple(fn.relabel.lookup(row=index, bank=str(bank.path)))

    p = pipe()
    p.build()
    p.feed_input("index", [np.array([r], np.int32) for r in rows])
    scores, classes, labels = (np.stack([np.array(x[i]) for i in range(len(rows))]) for x in p.run())
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores.view(np.uint32), s[rows].view(np.uint32))
    np.testing.assert_array_equal(classes, c[rows])
    np.testing.assert_array_equal(labels, store.labels[rows])


def test_info_and_verify_show_the_dtype(tmp_path, capsys):
    write_float32_store(tmp_path / "s.zarr")
    assert main(["info", str(tmp_path / "s.zarr")]) == 0
    out = capsys.readouterr().out
    assert "scores float32, classes int16" in out and "vs uncompressed float32+int16" in out
    assert main(["info", "--json", str(tmp_path / "s.zarr")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scores_dtype"] == "float32" and info["arrays"]["scores"]["dtype"] == "float32"
    assert main(["verify", "--quiet", str(tmp_path / "s.zarr")]) == 0
    assert "OK: " in capsys.readouterr().out
