"""ReLabelLoader on CPU over the demo dataset: targets, boxes, images, epochs, sharding, bad input."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from dali_relabel.pipelines import IMAGENET_MEAN, IMAGENET_STD
from crop_reference import pixel_window, torchvision_crop
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.loader import ReLabelLoader
from dali_relabel.testing.demo_dataset import build_demo_dataset
from dali_relabel.testing.official import official_pooled_logits, official_relabel_targets

N_IMAGES = 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=N_IMAGES, height=150, width=200,
                              progress=False)


@pytest.fixture
def dataset_copy(demo, tmp_path):
    """A writable copy of the demo images and store (for tests that damage them)."""
    shutil.copytree(demo.images, tmp_path / "images")
    shutil.copytree(demo.labels, tmp_path / "labels.zarr")
    return tmp_path / "images", tmp_path / "labels.zarr"


def loader(images, store, batch_size=8, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("num_threads", 2)
    kw.setdefault("seed", 3)
    return ReLabelLoader(images, store, batch_size, **kw)


def test_one_epoch_targets_boxes_and_images_match_references(demo):
    store = LabelStore.open(str(demo.labels))
    ld = loader(demo.images, demo.labels, batch_size=5, crop_size=64,
                outputs=("images", "targets", "labels", "boxes", "rows", "keys", "mirror"))
    assert len(ld) == -(-N_IMAGES // 5)
    seen = Counter()
    for images, targets, labels, boxes, rows, keys, mirror in ld:
        assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32
        assert targets.shape[1] == store.num_classes and targets.dtype == torch.float32
        assert labels.dtype == torch.int64 and rows.dtype == torch.int64
        for i, key in enumerate(keys):
            seen[key] += 1
            row = int(rows[i])
            assert store.keys[row] == key and labels[i] == store.labels[row]
            scores, classes = store.read(row)
            box = boxes[i].numpy()
            ref = slow_label_pool(scores, classes, box[:2], box[2:], store.num_classes)
            np.testing.assert_allclose(targets[i].numpy(), ref, rtol=1e-5, atol=1e-6)
            # Pixels: the loader's crop is torchvision's crop of the PIL image over the returned box, bit for bit
            # (DALI's CPU decoder and PIL's decode alike; the CPU resampler is Pillow's arithmetic).
            image = Image.open(demo.images / key).convert("RGB")
            ref_img = torchvision_crop(image, pixel_window(box, image.height, image.width), bool(mirror[i]), 64)
            assert torch.equal(images[i], ref_img), key
    assert sorted(seen) == sorted(demo.objects) and set(seen.values()) == {1}


def test_epochs_repeat_with_new_crops_and_order(demo):
    ld = loader(demo.images, demo.labels, outputs=("keys", "boxes"))
    epochs = [[(k, tuple(b.tolist())) for keys, boxes in ld for k, b in zip(keys, boxes)] for _ in range(2)]
    assert [sorted(k for k, _ in e) for e in epochs] == [sorted(demo.objects)] * 2
    assert epochs[0] != epochs[1]


def test_targets_train_with_cross_entropy(demo):
    images, targets = next(iter(loader(demo.images, demo.labels, crop_size=32)))
    logits = torch.nn.Conv2d(3, targets.shape[1], 32)(images).flatten(1)
    loss = torch.nn.CrossEntropyLoss()(logits, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.allclose(targets.sum(1), torch.ones(len(targets)), atol=1e-5)


@pytest.mark.parametrize("policy,sizes", [("partial", [7, 7, 7, 3]), ("fill", [7, 7, 7, 7]), ("drop", [7, 7, 7])])
def test_last_batch_policies(demo, policy, sizes):
    ld = loader(demo.images, demo.labels, batch_size=7, last_batch=policy, outputs=("keys",))
    assert [len(keys) for keys in ld] == sizes
    assert len(ld) == len(sizes)


def test_shards_cover_the_dataset_once(demo):
    shards = [loader(demo.images, demo.labels, batch_size=4, shard_id=i, num_shards=3, outputs=("keys",))
              for i in range(3)]
    keys = [k for ld in shards for batch in ld for k in batch]
    assert sorted(keys) == sorted(demo.objects)


def test_batch_larger_than_the_dataset(demo):
    batches = list(loader(demo.images, demo.labels, batch_size=100, outputs=("keys",)))
    assert len(batches) == 1 and sorted(batches[0]) == sorted(demo.objects)


def test_transpose_box_reproduces_the_official_targets(demo):
    """As the official code computes them: float32 maps and boxes (the loader's float32 corners are the official
    float32 coordinates, tests/ops/test_label_pool_official.py), float32 roi_align."""
    store = LabelStore.open(str(demo.labels))
    ld = loader(demo.images, demo.labels, transpose_box=True, outputs=("targets", "boxes", "rows"))
    targets, boxes, rows = next(iter(ld))
    assert boxes.dtype == torch.float32
    scores, classes = store.read(rows.numpy())
    maps = torch.stack([torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(classes.astype(np.float32))],
                       1).permute(0, 1, 4, 2, 3)
    logits = official_pooled_logits(maps, boxes, store.num_classes)
    assert np.abs(targets.numpy() - torch.softmax(logits.double(), 1).numpy()).max() <= 1e-6
    assert np.abs(targets.numpy() - official_relabel_targets(maps, boxes, store.num_classes).numpy()).max() <= 3e-6


@pytest.mark.parametrize("label_type", ["localized_single", "global_multi", "global_single"])
def test_label_types(demo, label_type):
    store = LabelStore.open(str(demo.labels))
    ld = loader(demo.images, demo.labels, label_type=label_type, outputs=("targets", "boxes", "rows"))
    targets, boxes, rows = next(iter(ld))
    for t, box, row in zip(targets.numpy(), boxes.numpy(), rows.tolist()):
        ref = slow_label_pool(*store.read(row), box[:2], box[2:], store.num_classes, label_type=label_type)
        np.testing.assert_allclose(t, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transpose_box", [False, True])
def test_a_float32_store_is_served_exactly(demo, tmp_path, transpose_box):
    """A float32 store (e.g. the official release imported losslessly): its float32 logits reach the targets."""
    store = LabelStore.open(str(demo.labels))
    scores, classes = store.read(slice(None))
    # float32 logits that float16 cannot hold (the same offset for all K of a cell keeps each cell sorted)
    scores = scores.astype(np.float32) + np.random.default_rng(0).uniform(1e-4, 1e-3, scores.shape[:-1] + (1,))
    f32 = LabelStore.create(tmp_path / "f32.zarr", keys=store.keys.tolist(), labels=store.labels,
                            num_classes=store.num_classes, height=store.height, width=store.width, k=store.k,
                            class_names=store.class_names, block_size=store.num_samples, scores_dtype="float32")
    f32.write_block(0, scores.astype(np.float32), classes)
    ld = loader(demo.images, tmp_path / "f32.zarr", bank_dir=tmp_path / "banks", transpose_box=transpose_box,
                outputs=("targets", "boxes", "rows"))
    assert ld.bank.scores.dtype == np.float32
    targets, boxes, rows = next(iter(ld))
    for t, box, row in zip(targets.numpy(), boxes.numpy(), rows.tolist()):
        s32, c = f32.read(row)
        assert s32.dtype == np.float32
        ref = slow_label_pool(s32, c, box[:2], box[2:], store.num_classes, transpose_box=transpose_box)
        np.testing.assert_allclose(t, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("folder", ["cat", 0])
def test_images_without_label_maps(dataset_copy, folder):
    """An image without a map gets the one-hot target of its folder; class 0 too (its reader row is then exactly
    the store size N, the first value past the store's rows)."""
    images, labels = dataset_copy
    folder = folder if isinstance(folder, str) else sorted(p.name for p in images.iterdir() if p.is_dir())[folder]
    extra = images / folder / "zz_unlabelled.jpg"
    shutil.copy(next(images.rglob("*.jpg")), extra)
    with pytest.raises(KeyError, match=f"1 of 25 images have no label map in .* e.g. {folder}/zz_unlabelled.jpg; "
                                       "annotate them, or pass missing='onehot'"):
        loader(images, labels)
    ld = loader(images, labels, missing="onehot", batch_size=25, outputs=("targets", "labels", "keys", "rows"))
    assert ld.num_missing == 1
    targets, labels_out, keys, rows = next(iter(ld))
    i = keys.index(f"{folder}/zz_unlabelled.jpg")
    label = ld.images.classes.index(folder)
    assert (folder == "cat") == (label != 0)
    assert rows[i] == -1 and labels_out[i] == label and (np.delete(rows.numpy(), i) >= 0).all()
    assert torch.equal(targets[i], torch.nn.functional.one_hot(torch.tensor(label), targets.shape[1]).float())
    others = np.delete(np.arange(25), i)
    assert torch.allclose(targets[others].sum(1), torch.ones(24)) and (targets[others].max(1).values < 1).all()


def test_a_store_without_labels_under_class_folders(dataset_copy, tmp_path):
    """Unknown store labels (-1) are not a disagreement with the folders: the loader runs (targets, keys); only the
    'labels' output, read from the store, is refused by name; a store label that differs from its folder fails."""
    images, labels = dataset_copy
    store = LabelStore.open(labels)
    scores, classes = store.read(slice(None))
    geometry = dict(num_classes=store.num_classes, height=store.height, width=store.width, k=store.k,
                    class_names=store.class_names, block_size=store.num_samples)
    unlabelled = LabelStore.create(tmp_path / "unlabelled.zarr", keys=store.keys.tolist(), labels=None, **geometry)
    unlabelled.write_block(0, scores, classes)
    assert (LabelStore.open(tmp_path / "unlabelled.zarr").labels == -1).all()
    ld = loader(images, tmp_path / "unlabelled.zarr", batch_size=N_IMAGES, outputs=("targets", "keys"))
    targets, keys = next(iter(ld))
    assert sorted(keys) == sorted(store.keys.tolist()) and torch.allclose(targets.sum(1), torch.ones(N_IMAGES))
    with pytest.raises(ValueError, match=f"the store {tmp_path / 'unlabelled.zarr'} has no label for {N_IMAGES} "
                                         "images; the 'labels' output needs them"):
        loader(images, tmp_path / "unlabelled.zarr", outputs=("targets", "labels"))

    wrong = store.labels.copy()
    wrong[5] = (wrong[5] + 1) % store.num_classes
    other = LabelStore.create(tmp_path / "wrong.zarr", keys=store.keys.tolist(), labels=wrong, **geometry)
    other.write_block(0, scores, classes)
    with pytest.raises(ValueError, match=f"1 images have a different label in the store than their folder index "
                                         rf"\(e.g. {store.keys[5]}\)"):
        loader(images, tmp_path / "wrong.zarr")


def test_skipped_links_are_reported_at_the_callers_line(dataset_copy):
    """A link that loops back is skipped and said so, in a warning that points at the code that made the loader
    (stacklevel), not at dali_relabel's internals."""
    images, labels = dataset_copy
    (images / "cat" / "loop").symlink_to(images, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"1 symbolic links under .* were not followed") as caught:
        loader(images, labels)
    links = [w for w in caught if "symbolic links" in str(w.message)]
    assert len(links) == 1 and links[0].filename == __file__


def test_stores_of_more_than_256_samples_match(tmp_path):
    """Matching compares counts, not identities (ints above 256 are distinct objects in CPython)."""
    from dali_relabel.loader.dataset import LabeledImages

    keys = [f"c{i % 3}/img_{i:04d}.jpg" for i in range(300)]
    for key in keys:
        (tmp_path / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / key).write_bytes(b"")
    store = LabelStore.create(tmp_path / "s.zarr", keys=keys, labels=[i % 3 for i in range(300)], num_classes=3,
                              height=1, width=1, k=1, block_size=300)
    data = LabeledImages.match("test", tmp_path / "images", store)
    assert len(data) == 300 and data.num_missing == 0
    assert [keys[r] for r in data.rows] == data.keys


def test_num_classes_mismatch_needs_consent(dataset_copy):
    images, labels = dataset_copy
    (images / "zebra").mkdir()
    with pytest.warns(UserWarning, match="class folders hold no images .*zebra"):
        with pytest.raises(ValueError, match="the label store has 10 classes but .* has 11 class folders; pass "
                                             "num_classes=10"):
            loader(images, labels)
    with pytest.warns(UserWarning):
        assert loader(images, labels, num_classes=10).num_classes == 10


def test_corrupt_jpeg_is_named(dataset_copy):
    images, labels = dataset_copy
    victim = sorted(images.rglob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    key = victim.relative_to(images).as_posix()
    with pytest.raises(Exception, match=f"relabel.check_image: '{key}': truncated JPEG"):
        for _ in loader(images, labels, batch_size=N_IMAGES):
            pass


def test_grayscale_cmyk_and_png_images_decode_to_rgb(dataset_copy):
    images, labels = dataset_copy
    files = sorted(images.rglob("*.jpg"))
    Image.open(files[0]).convert("L").save(files[0], quality=90)
    Image.open(files[1]).convert("CMYK").save(files[1], quality=90)
    # A PNG under a .jpg name (as in ImageNet): the decoder goes by content, not by extension.
    buf = io.BytesIO()
    Image.open(files[2]).save(buf, format="PNG")
    files[2].write_bytes(buf.getvalue())
    (images / "notes.txt").write_text("not an image")
    (images / "cat" / "readme.md").write_text("not an image")
    with pytest.warns(UserWarning, match="1 files under .* are not images DALI decodes and were skipped"):
        ld = loader(images, labels, batch_size=N_IMAGES, crop_size=32, outputs=("images", "keys"))
    imgs, keys = next(iter(ld))
    assert imgs.shape == (N_IMAGES, 3, 32, 32)
    gray = keys.index(files[0].relative_to(images).as_posix())
    assert torch.allclose(imgs[gray, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0],
                          imgs[gray, 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1], atol=0.02)


def test_bad_arguments(demo):
    with pytest.raises(ValueError, match=r"unknown outputs \['pixels'\]"):
        loader(demo.images, demo.labels, outputs=("pixels",))
    with pytest.raises(ValueError, match="last_batch must be one of"):
        loader(demo.images, demo.labels, last_batch="keep")
    with pytest.raises(FileNotFoundError, match="no such directory .* or file"):
        loader(demo.images / "nowhere", demo.labels)
