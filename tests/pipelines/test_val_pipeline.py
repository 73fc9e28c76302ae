"""relabel_val_pipeline on CPU: deterministic center crops, labels, and the central box's soft target."""

from __future__ import annotations

import numpy as np
import pytest
from dali_relabel.config import EvalConfig
from dali_relabel.pipelines import IMAGENET_MEAN, IMAGENET_STD, FileReader, relabel_val_pipeline
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.image_folder import ImageList
from dali_relabel.testing.demo_dataset import build_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=8, height=150, width=200, progress=False)


def file_list(tmp_path, keys, column):
    path = tmp_path / "val.txt"
    path.write_text("".join(f"{k} {c}\n" for k, c in zip(keys, column)))
    return str(path)


def run(**kw):
    p = relabel_val_pipeline(batch_size=8, num_threads=2, device_id=None, device="cpu", **kw)
    p.build()
    return [np.stack([np.array(t[i]) for i in range(len(t))]) for t in p.run()]


def test_center_crop_and_class_labels(demo, tmp_path):
    imgs = ImageList.from_folder(demo.images)
    images, labels = run(reader=FileReader(str(demo.images), file_list=file_list(tmp_path, imgs.keys, imgs.labels)),
                         config=EvalConfig(crop_size=56, crop_pct=56 / 64))
    assert images.shape == (8, 3, 56, 56) and labels.tolist() == imgs.labels
    # Independent check: PIL resize of the shorter side to 64, center crop 56, normalize.
    img = Image.open(demo.images / imgs.keys[0]).convert("RGB")
    w, h = img.size
    img = img.resize((round(w * 64 / min(w, h)), round(h * 64 / min(w, h))), Image.BILINEAR)
    left, top = (img.size[0] - 56) // 2, (img.size[1] - 56) // 2

    def crop(dx):
        box = (left + dx, top, left + dx + 56, top + 56)
        ref = (np.asarray(img.crop(box), np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        return blocks(ref.transpose(2, 0, 1))

    def blocks(x):  # 8x8 block means: resize filters differ on fine texture, the geometry must not
        return x.reshape(3, 7, 8, 7, 8).mean((2, 4))

    centred = np.abs(blocks(images[0]) - crop(0)).mean()
    assert centred < 0.1
    assert np.abs(blocks(images[0]) - crop(8)).mean() > 1.5 * centred  # the test can tell a shifted crop


def test_a_truncated_image_is_named(demo, tmp_path):
    """check_images (the default) fails on a broken file naming it, as the training pipeline does."""
    import shutil

    shutil.copytree(demo.images, tmp_path / "images")
    imgs = ImageList.from_folder(tmp_path / "images")
    victim = tmp_path / "images" / imgs.keys[2]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(Exception, match=f"relabel.check_image: '{imgs.keys[2]}': truncated JPEG"):
        run(reader=FileReader(str(tmp_path / "images"), file_list=file_list(tmp_path, imgs.keys, imgs.labels)),
            config=EvalConfig(crop_size=56, crop_pct=56 / 64))


def test_central_box_targets_from_the_bank(demo, tmp_path):
    store = LabelStore.open(str(demo.labels))
    bank = store.materialize(cache_dir=tmp_path / "bank", progress=False)
    rows = np.arange(8)
    targets, labels, boxes = run(reader=FileReader(str(demo.images), file_list=file_list(tmp_path, store.keys, rows)),
                                 bank=bank, config=EvalConfig(crop_size=224, crop_pct=0.875),
                                 outputs=("targets", "labels", "boxes"))
    assert labels.tolist() == store.labels.tolist()
    # 150x200 images: the center crop covers 224/256 of the shorter side (150), centred.
    half_y, half_x = 150 * 224 / 256 / 2 / 150, 150 * 224 / 256 / 2 / 200
    np.testing.assert_allclose(boxes, [[0.5 - half_y, 0.5 - half_x, 0.5 + half_y, 0.5 + half_x]] * 8, atol=1e-6)
    for t, b, r in zip(targets, boxes, rows):
        np.testing.assert_allclose(t, slow_label_pool(*store.read(int(r)), b[:2], b[2:], store.num_classes),
                                   rtol=1e-5, atol=1e-6)


def test_arguments_are_checked(demo):
    with pytest.raises(ValueError, match="the targets, boxes and rows outputs need a label bank"):
        relabel_val_pipeline(batch_size=1, num_threads=1, device_id=None, reader=FileReader("x", file_list="y"),
                             outputs=("images", "targets"))
    with pytest.raises(TypeError, match="reader= is required"):
        relabel_val_pipeline(batch_size=1, num_threads=1, device_id=None)
    with pytest.raises(TypeError, match="relabel_val_pipeline got an unexpected keyword argument 'flip_prob'"):
        relabel_val_pipeline(batch_size=1, num_threads=1, device_id=None, reader=FileReader("x", file_list="y"),
                             flip_prob=0.5)


def test_the_old_flat_keywords_still_work(demo, tmp_path):
    """file_root/file_list/bank path/num_classes/resize_shorter/crop_size: the same batch, with DeprecationWarnings."""
    store = LabelStore.open(str(demo.labels))
    bank = store.materialize(cache_dir=tmp_path / "bank", progress=False)
    listing = file_list(tmp_path, store.keys, np.arange(8))
    new = run(reader=FileReader(str(demo.images), file_list=listing), bank=bank,
              config=EvalConfig(crop_size=56, crop_pct=56 / 64), outputs=("images", "targets", "labels"))
    with pytest.warns(DeprecationWarning, match="relabel_val_pipeline: file_root=, file_list= are deprecated"):
        old = run(file_root=str(demo.images), file_list=listing, bank=str(bank.path), num_classes=store.num_classes,
                  resize_shorter=64, crop_size=56, outputs=("images", "targets", "labels"))
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)
