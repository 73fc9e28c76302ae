"""dali-relabel info / verify, and the DALI decode pre-scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from store_util import create_store, fill, keys_for

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.ops.image_check import undecodable_images
from dali_relabel.store.format import block_digest, block_marker


def write_images(root: Path, keys: list[str]) -> None:
    rng = np.random.default_rng(0)
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)).save(path, format="JPEG")


@pytest.fixture
def good(tmp_path):
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    fill(store)
    write_images(tmp_path / "train", keys_for(40))
    return tmp_path


def test_info(good, capsys):
    assert main(["info", str(good / "s.zarr")]) == 0
    out = capsys.readouterr().out
    for text in ("samples      40", "H=6 W=5 K=3  num_classes=50", "scores float16, classes int16",
                 "3/3 complete (16 samples each)", "transpose+bytes+blosc", "B/sample", "% of the official float32"):
        assert text in out, text
    assert main(["info", "--json", str(good / "s.zarr")]) == 0
    info = json.loads(capsys.readouterr().out)
    store = LabelStore.open(good / "s.zarr")
    assert info["complete"] and info["num_samples"] == 40 and info["arrays"]["scores"]["chunks"] == [16, 6, 5, 3]
    assert info["stored_bytes"] == sum(store.nbytes_stored().values())
    assert info["fraction_of_official_float32"] == pytest.approx(
        (info["arrays"]["scores"]["stored_bytes"] + info["arrays"]["classes"]["stored_bytes"]) / (40 * 2 * 90 * 4))


def test_info_reports_incomplete(tmp_path, capsys):
    fill(create_store(tmp_path / "s.zarr", n=40, block_size=16), blocks=[1])
    assert main(["info", str(tmp_path / "s.zarr")]) == 0
    assert "1/3 complete (16 samples each)  INCOMPLETE" in capsys.readouterr().out


def test_verify_ok(good, capsys):
    assert main(["verify", "--quiet", str(good / "s.zarr"), "--images", str(good / "train")]) == 0
    assert "OK: " in capsys.readouterr().out


def _rewrite_block_behind_the_store(url, block, mutate):
    """Writes invalid values with a matching digest, as a foreign tool could: only verify can catch them."""
    g = zarr.open_group(url, mode="r+")
    rows = slice(block * 16, (block + 1) * 16)
    s, c = g["scores"][rows], g["classes"][rows]
    mutate(s, c)
    g["scores"][rows], g["classes"][rows] = s, c
    marker = block_marker(block_digest(s, c), LabelStore.open(url).identity)  # its digest, this store's identity
    g["block_digests"][block] = np.frombuffer(marker, np.uint8)


def test_verify_reports_every_problem_with_its_key(good, capsys):
    url = good / "s.zarr"

    def mutate(s, c):
        s[1, 2, 3, 0] = np.inf        # row 17
        c[2, 0, 0, 2] = 50            # row 18: out of range
        c[3, 4, 4, 1] = c[3, 4, 4, 0]  # row 19: duplicate in a cell
        s[4, 1, 1] = [1, 2, 3]        # row 20: unsorted

    _rewrite_block_behind_the_store(url, 1, mutate)
    g = zarr.open_group(url, mode="r+")
    g["classes"][35] = g["classes"][35][..., ::-1]  # block 2 changed without its digest
    (good / "train" / "n01/img_00005.JPEG").unlink()
    write_images(good / "train", ["n09/extra.jpg"])
    (good / "train" / "n02/img_00006.JPEG").write_bytes(b"not a jpeg at all" * 8)
    assert main(["verify", "--quiet", str(url), "--images", str(good / "train")]) == 1
    lines = capsys.readouterr().out.splitlines()
    expected = [
        "[not-finite] n01/img_00017.JPEG: scores contain NaN or Inf (first at cell y=2, x=3)",
        "[class-range] n02/img_00018.JPEG: class index outside [0, 50) (first at cell y=0, x=0)",
        "[duplicate-class] n03/img_00019.JPEG: a class appears twice in one cell (first at cell y=4, x=4)",
        "[unsorted] n00/img_00020.JPEG: scores not in descending order (first at cell y=1, x=1)",
        "[digest] block 2 (rows 32..39) does not match its completion digest (modified or damaged after writing)",
        f"[missing-image] n01/img_00005.JPEG: no image file {good / 'train' / 'n01/img_00005.JPEG'}",
        "[unlabelled-image] n09/extra.jpg: image has no label map in the store",
    ]
    for line in expected:
        assert line in lines, line
    assert any(ln.startswith("[undecodable] n02/img_00006.JPEG: cannot be decoded by DALI's CPU decoder")
               for ln in lines)
    assert lines[-2].startswith("FAILED: 8 problem(s)")
    assert lines[-1] == ("2 block(s) can be rewritten: rerun with --mark-incomplete, then rerun the writer with the "
                         "same arguments")


def test_verify_incomplete_and_duplicate_labels(tmp_path, capsys):
    store = create_store(tmp_path / "s.zarr", n=40, block_size=16)
    fill(store, blocks=[0, 2])
    assert main(["verify", "--quiet", str(tmp_path / "s.zarr")]) == 1
    out = capsys.readouterr().out
    assert ("[incomplete] block 1 (rows 16..31, keys 'n00/img_00016.JPEG'..'n03/img_00031.JPEG') is not written"
            in out)
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    g["labels"][3] = 77
    assert main(["verify", "--quiet", "--max-print", "1", str(tmp_path / "s.zarr")]) == 1
    out = capsys.readouterr().out.splitlines()
    # Labels changed behind the store's back: the store no longer matches its identity (said once), and the label.
    assert out[1] == "... 2 more problem(s) not printed (--max-print)" and "1 identity, 1 incomplete, 1 label" in out[2]


def test_undecodable_images_bisects_to_the_bad_ones(tmp_path):
    keys = [f"{i}.jpg" for i in range(40)]
    write_images(tmp_path, keys)
    (tmp_path / "3.jpg").write_bytes(b"garbage" * 20)
    data = (tmp_path / "7.jpg").read_bytes()
    (tmp_path / "7.jpg").write_bytes(data[:len(data) // 3])
    (tmp_path / "20.jpg").write_bytes(b"")
    data = (tmp_path / "25.jpg").read_bytes()
    (tmp_path / "25.jpg").write_bytes(data[:-10])  # the decoder alone would return a partly grey image
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "30.jpg", format="PNG")  # wrong name, decodes
    paths = [tmp_path / k for k in keys] + [tmp_path / "missing.jpg"]
    bad = undecodable_images(paths, batch_size=16, progress=False)
    assert [Path(p).name for p, _ in bad] == ["3.jpg", "7.jpg", "20.jpg", "25.jpg", "missing.jpg"]
    reasons = dict((Path(p).name, r) for p, r in bad)
    assert reasons["20.jpg"] == "empty file" and reasons["missing.jpg"].startswith("cannot be read")
    assert reasons["3.jpg"].startswith("cannot be decoded by DALI's CPU decoder")
    assert "truncated JPEG (no end-of-image marker)" in reasons["25.jpg"]
