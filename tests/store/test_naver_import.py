"""import-naver: official [2, K, H, W] .pt maps → LabelStore, against an independent conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.errors import InvalidArgument
from dali_relabel.image_folder import ImageList
from dali_relabel.store.naver_import import NaverImportError, import_naver
from dali_relabel.testing.synthetic import synthetic_label_maps

CLASSES = ["n03", "n01", "n02"]  # created unsorted: labels must follow the sorted order
H, W, K, C = 6, 4, 3, 30


def make_release(root: Path, per_class: int = 7, dtype=torch.float32, transposed: bool = False, seed: int = 0):
    """Images (tiny JPEG/PNG) and official-format maps; returns {key: (scores [H,W,K], classes)} sorted per cell."""
    rng = np.random.default_rng(seed)
    n = per_class * len(CLASSES)
    scores, classes = synthetic_label_maps(n, height=H, width=W, k=K, num_classes=C, seed=seed)
    truth, i = {}, 0
    for cls in CLASSES:
        for j in range(per_class):
            ext = ".png" if j == 0 else ".JPEG"
            key = f"{cls}/{cls}_{j}{ext}"
            sub = "sub/" if j == 1 else ""  # a nested folder, as ImageFolder allows
            key = f"{cls}/{sub}{cls}_{j}{ext}"
            img = root / "train" / key
            img.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(img)
            # The release's [K, H, W] planes, in an arbitrary (not descending) rank order, classes as floats.
            perm = rng.permutation(K)
            s = scores[i].astype(np.float32).transpose(2, 0, 1)[perm]
            c = classes[i].astype(np.float32).transpose(2, 0, 1)[perm]
            if transposed:
                s, c = s.transpose(0, 2, 1), c.transpose(0, 2, 1)
            pt = root / "maps" / f"{cls}/{sub}{cls}_{j}.pt"
            pt.parent.mkdir(parents=True, exist_ok=True)
            torch.save(torch.from_numpy(np.stack([s, c])).to(dtype), pt)
            truth[key] = canonical(scores[i], classes[i])
            i += 1
    return truth


def canonical(scores, classes):
    """Each cell sorted by descending score, equal scores by ascending class (cell by cell, plainly)."""
    s, c = scores.copy(), classes.copy()
    for y in range(s.shape[0]):
        for x in range(s.shape[1]):
            pairs = sorted(zip(s[y, x].tolist(), c[y, x].tolist()), key=lambda p: (-p[0], p[1]))
            s[y, x], c[y, x] = [p[0] for p in pairs], [p[1] for p in pairs]
    return s, c


def check_store(url, truth):
    store = LabelStore.open(url)
    assert store.is_complete
    ref = torchvision.datasets.ImageFolder(str(Path(url).parent / "train"))
    keys = [Path(p).relative_to(ref.root).as_posix() for p, _ in ref.samples]
    assert store.keys.tolist() == keys  # rows in ImageFolder order
    np.testing.assert_array_equal(store.labels, [t for _, t in ref.samples])
    assert store.class_names is None or store.class_names == ref.classes
    s, c = store.read(slice(None))
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(s[i], truth[key][0], err_msg=key)
        np.testing.assert_array_equal(c[i], truth[key][1], err_msg=key)
    return store


def test_image_list_matches_torchvision_image_folder(tmp_path):
    make_release(tmp_path)
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image")
    listing = ImageList.from_folder(tmp_path / "train")
    classes, keys, labels = listing.classes, listing.keys, listing.labels
    ref = torchvision.datasets.ImageFolder(str(tmp_path / "train"))
    assert classes == ref.classes
    assert [(str(tmp_path / "train" / k), lab) for k, lab in zip(keys, labels)] == ref.samples


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_import_end_to_end(tmp_path, dtype):
    truth = make_release(tmp_path, dtype=dtype)
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, block_size=4,
                          workers=1, progress=False)
    assert (report.imported, report.blocks_written, report.blocks_already_complete) == (21, 6, 0)
    store = check_store(tmp_path / "s.zarr", truth)
    assert store.num_classes == C and (store.height, store.width, store.k) == (H, W, K)
    assert store.annotator["file_layout"] == "[2, K, y, x]"


def test_transposed_layout(tmp_path):
    truth = make_release(tmp_path, transposed=True)
    import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, layout="kxy",
                 workers=1, progress=False)
    check_store(tmp_path / "s.zarr", truth)


def test_cli_parallel_workers_and_resume(tmp_path, capsys):
    truth = make_release(tmp_path)
    bad = tmp_path / "maps" / "n03" / "n03_5.pt"
    good = bad.read_bytes()
    bad.write_bytes(b"corrupt")
    args = ["import-naver", "--maps", str(tmp_path / "maps"), "--images", str(tmp_path / "train"),
            "--out", str(tmp_path / "s.zarr"), "--num-classes", str(C), "--block-size", "4", "--quiet"]
    assert main(args + ["--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: cannot be read as a torch tensor" in err and "rerun the same command to resume" in err
    partial = LabelStore.open(tmp_path / "s.zarr")
    done = partial.completed_blocks()
    assert not done[partial.row_of("n03/n03_5.JPEG") // 4]
    bad.write_bytes(good)
    assert main(args + ["--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{int((~done).sum())} blocks written, {int(done.sum())} already complete" in out
    check_store(tmp_path / "s.zarr", truth)


def test_missing_pairs_fail_or_are_reported(tmp_path):
    truth = make_release(tmp_path)
    (tmp_path / "maps" / "n01" / "n01_3.pt").unlink()
    (tmp_path / "maps" / "n02" / "n02_extra.pt").write_bytes((tmp_path / "maps" / "n02" / "n02_2.pt").read_bytes())
    with pytest.raises(NaverImportError, match=r"1 images without a map: n01/n01_3.JPEG; 1 maps without an image: "
                                               r"n02/n02_extra.pt\. .*allow missing pairs \(allow_missing\)"):
        import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, progress=False)
    assert not (tmp_path / "s.zarr").exists()  # nothing written before the check
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C,
                          allow_missing=True, workers=1, progress=False)
    assert report.images_without_map == ["n01/n01_3.JPEG"] and report.maps_without_image == ["n02/n02_extra.pt"]
    assert "1 images without a map (not imported): n01/n01_3.JPEG" in report.summary()
    store = LabelStore.open(tmp_path / "s.zarr")
    assert "n01/n01_3.JPEG" not in store.keys.tolist() and store.num_samples == 20
    assert store.labels[store.row_of("n02/n02_4.JPEG")] == 1  # labels still from all class folders
    np.testing.assert_array_equal(store.read(store.row_of("n03/n03_6.JPEG"))[0], truth["n03/n03_6.JPEG"][0])


def _bad_map(tmp_path, tensor):
    make_release(tmp_path)
    path = tmp_path / "maps" / "n02" / "n02_4.pt"
    torch.save(tensor, path)
    return path


@pytest.mark.parametrize("case,pattern", [
    ("shape", r"tensor of shape \[3, 3, 6, 4\], expected \[2, K, H, W\]"),
    ("other_shape", r"shape \[2, 3, 5, 4\] differs from the first map's \[2, 3, 6, 4\]"),
    ("nan", r"score nan at \[k, i, j\] = \[1, 2, 3\] is not finite"),
    ("class_range", r"class index 30.0 at \[k, i, j\] = \[0, 0, 0\] is not an integer in \[0, 30\).*check the "
                    r"number of classes"),
    ("class_fraction", r"class index 2.5 .* is not an integer"),
    ("duplicate", r"cell \(y=1, x=1\) lists a class twice"),
    ("int_dtype", r"dtype torch.int64, expected float32 or float16"),
    ("not_tensor", r"holds a dict, expected a tensor"),
])
def test_bad_maps_fail_naming_the_file(tmp_path, case, pattern):
    t = torch.from_numpy(np.stack([np.linspace(9, 1, K * H * W).reshape(K, H, W),
                                   np.arange(K * H * W).reshape(K, H, W) % C]).astype(np.float32))
    if case == "shape":
        t = torch.cat([t, t[:1]])[:, :, :, :]
    elif case == "other_shape":
        t = t[:, :, :5]
    elif case == "nan":
        t[0, 1, 2, 3] = float("nan")
    elif case == "class_range":
        t[1, 0, 0, 0] = C
    elif case == "class_fraction":
        t[1, 0, 0, 0] = 2.5
    elif case == "duplicate":
        t[1, :, 1, 1] = 7
    elif case == "int_dtype":
        t = t.long()
    elif case == "not_tensor":
        t = {"maps": t}
    path = _bad_map(tmp_path, t)
    with pytest.raises(NaverImportError, match=pattern) as info:
        import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, workers=1,
                     progress=False)
    assert str(info.value).startswith(str(path))


def test_too_few_classes(tmp_path):
    make_release(tmp_path)
    with pytest.raises(InvalidArgument, match="num_classes=2: is below the 3 class folders of"):
        import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=2, progress=False)
