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


def make_release(root: Path, per_class: int = 7, dtype=torch.float32, transposed: bool = False, seed: int = 0,
                 class_folders=CLASSES, float32_bits: bool = False):
    """Images (tiny JPEG/PNG) and official-format maps; returns {key: (scores [H,W,K], classes)} sorted per cell.

    ``float32_bits``: logits with float32 precision (as the official release's), which float16 would round.
    """
    rng = np.random.default_rng(seed)
    n = per_class * len(class_folders)
    scores, classes = synthetic_label_maps(n, height=H, width=W, k=K, num_classes=C, seed=seed)
    if float32_bits:
        # The same small offset for all K of a cell keeps the rank order (and ties) of each cell.
        scores = scores.astype(np.float32) + rng.uniform(1e-4, 1e-3, (n, H, W, 1)).astype(np.float32)
        assert (scores.astype(np.float16).astype(np.float32) != scores).mean() > 0.9
    truth, i = {}, 0
    for cls in class_folders:
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
    truth = make_release(tmp_path, dtype=dtype, float32_bits=dtype == torch.float32)
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, block_size=4,
                          workers=1, progress=False)
    assert (report.imported, report.blocks_written, report.blocks_already_complete) == (21, 6, 0)
    store = check_store(tmp_path / "s.zarr", truth)  # float32 files: every bit kept
    assert store.num_classes == C and (store.height, store.width, store.k) == (H, W, K)
    assert store.annotator["file_layout"] == "[2, K, y, x]"
    # The store keeps the files' dtype unless told otherwise: the float32 release loses nothing.
    name = str(dtype).replace("torch.", "")
    assert store.scores_dtype == name and report.scores_dtype == name
    assert f"scores stored as {name}" in report.summary()


def test_scores_dtype_float16_rounds_a_float32_release(tmp_path):
    truth = make_release(tmp_path, float32_bits=True)
    import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, scores_dtype="float16",
                 workers=1, progress=False)
    store = LabelStore.open(tmp_path / "s.zarr")
    assert store.scores_dtype == "float16"
    for key in ("n01/n01_0.png", "n03/sub/n03_1.JPEG"):
        np.testing.assert_array_equal(store.read(store.row_of(key))[0], truth[key][0].astype(np.float16))


def test_a_float32_map_in_an_automatically_float16_store_fails(tmp_path):
    make_release(tmp_path, dtype=torch.float16)
    path = tmp_path / "maps" / "n03" / "n03_5.pt"  # not the first map (n01/n01_0.pt), which fixes float16
    t = torch.load(path).float()
    t[0] += 1e-4
    torch.save(t, path)
    args = dict(num_classes=C, workers=1, progress=False)
    with pytest.raises(NaverImportError, match=r"n03_5\.pt: holds float32 scores, but the store keeps float16 "
                                               r"\(chosen from the first map, .*n01_0\.pt, which is float16\): import "
                                               r"with scores_dtype='float32'"):
        import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", **args)
    import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "t.zarr", scores_dtype="float16", **args)
    store = LabelStore.open(tmp_path / "t.zarr")
    np.testing.assert_array_equal(store.read(store.row_of("n03/n03_5.JPEG"))[0],
                                  canonical(*[a.numpy().transpose(1, 2, 0) for a in t])[0].astype(np.float16))


# Three ImageNet-1k class folders: classes 0, 1 and 999 of the 1000.
IMAGENET_SUBSET = ["n01440764", "n01443537", "n15075141"]


def test_a_subset_of_imagenet_imports_without_num_classes(tmp_path, capsys):
    truth = make_release(tmp_path, class_folders=IMAGENET_SUBSET)
    args = ["import-naver", "--maps", str(tmp_path / "maps"), "--images", str(tmp_path / "train"),
            "--out", str(tmp_path / "s.zarr"), "--workers", "1", "--quiet"]
    assert main(args) == 0
    assert "num_classes 1000 (ImageNet-1k: the class folders are WordNet ids)" in capsys.readouterr().out
    store = LabelStore.open(tmp_path / "s.zarr")
    assert store.num_classes == 1000 and store.scores_dtype == "float32"
    # The images' labels are their classes' ImageNet-1k indices, not the positions of 3 folders.
    from timm.data import ImageNetInfo

    imagenet = ImageNetInfo().label_names()
    assert [imagenet.index(w) for w in IMAGENET_SUBSET] == [0, 1, 999]
    assert store.class_names == list(imagenet)
    for key in truth:
        assert store.labels[store.row_of(key)] == imagenet.index(key.split("/")[0])
        np.testing.assert_array_equal(store.read(store.row_of(key))[0], truth[key][0])


def test_a_subset_of_imagenet_without_timm_has_unknown_labels(tmp_path, monkeypatch):
    from dali_relabel.store import naver_import

    make_release(tmp_path, class_folders=IMAGENET_SUBSET)
    monkeypatch.setattr(naver_import, "imagenet1k_classes", lambda: None)
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", workers=1, progress=False)
    store = LabelStore.open(tmp_path / "s.zarr")
    assert store.num_classes == 1000 and (store.labels == -1).all() and store.class_names is None
    assert store.block_size == 512  # the default, as the command line's --block-size
    assert "labels unknown (-1): 3 class folders of 1000 classes (install timm for ImageNet-1k's class order)" \
        in report.summary()


def test_other_releases_default_to_the_largest_class_index_read_before_writing(tmp_path, workers=2):
    """Folders that are not WordNet ids: num_classes = max(folders, 1 + the largest class index in any map),
    read by the workers before any block is written (one worker: test_few_classes_default_to_the_folder_count)."""
    make_release(tmp_path)
    last = tmp_path / "maps" / "n03" / "sub" / "n03_1.pt"  # the last row: its block is written last
    t = torch.load(last)
    t[1, 0, 0, 0] = 57  # a class index no other map holds
    torch.save(t, last)
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", block_size=4, workers=workers,
                          progress=False)
    store = LabelStore.open(tmp_path / "s.zarr")
    assert store.num_classes == 58 and store.is_complete
    assert f"num_classes 58 (1 + the largest class index in the maps (57, in {last}))" in report.summary()
    assert "labels are the folder indices 0..2 (3 class folders of 58 classes)" in report.summary()
    np.testing.assert_array_equal(store.labels, [0] * 7 + [1] * 7 + [2] * 7)


def test_few_classes_default_to_the_folder_count(tmp_path):
    make_release(tmp_path, class_folders=[f"c{i:02d}" for i in range(40)], per_class=1)  # ids < 30 < 40 folders
    report = import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", workers=1, progress=False)
    store = LabelStore.open(tmp_path / "s.zarr")
    assert store.num_classes == 40 and store.class_names == [f"c{i:02d}" for i in range(40)]
    assert "num_classes 40 (the number of class folders)" in report.summary() and "labels are" not in report.summary()


def test_help_says_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["import-naver", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 1000 when the class folders are WordNet ids" in text
    assert "otherwise the larger of the number of class folders and 1 + the largest class index in the maps" in text
    assert "--scores-dtype {float32,float16}" in text and "float32 for the official release, kept exactly" in text


def test_transposed_layout(tmp_path):
    truth = make_release(tmp_path, transposed=True)
    import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, layout="kxy",
                 workers=1, progress=False)
    check_store(tmp_path / "s.zarr", truth)


def test_num_classes_scan_reads_past_a_bad_map(tmp_path):
    """Finding num_classes reads every map; one that cannot be read is skipped there (it is reported, named, when
    its block is imported), and the maps after it still count."""
    from dali_relabel.store.naver_import import _largest_class_index

    bad, low, high = tmp_path / "a_bad.pt", tmp_path / "b_low.pt", tmp_path / "c_high.pt"
    bad.write_bytes(b"not a torch file")
    torch.save(torch.stack([torch.zeros(K, H, W), torch.full((K, H, W), 3.0)]), low)
    torch.save(torch.stack([torch.zeros(K, H, W), torch.full((K, H, W), 41.0)]), high)
    # 8 maps: read in chunks of 2, the bad one first in its chunk, the largest class right after it.
    paths = [str(bad), str(high)] + [str(low)] * 6
    assert _largest_class_index(paths, workers=1, progress=False) == (41, str(high))
    assert _largest_class_index([str(low), str(bad)], workers=1, progress=False) == (3, str(low))
    assert _largest_class_index([str(bad)] * 8, workers=1, progress=False) == (-1, "")  # nothing readable: no class


def test_an_unknown_layout_is_refused_by_name(tmp_path):
    make_release(tmp_path, per_class=1)
    with pytest.raises(ValueError) as e:
        import_naver(tmp_path / "maps", tmp_path / "train", tmp_path / "s.zarr", num_classes=C, layout="yxk",
                     workers=1, progress=False)
    assert "layout" in str(e.value) and "'yxk'" in str(e.value) and "['kxy', 'kyx']" in str(e.value)
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was written


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
