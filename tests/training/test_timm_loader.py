"""dali_relabel.timm.create_loader: every argument of timm's create_loader is mapped or refused by name, with timm's
defaults; resolve_data_config's dict works as is; the evaluation loader makes timm's evaluation crops."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
from loader_util import on_cpu, small_demo  # noqa: F401 (fixture)
from PIL import Image

from dali_relabel.timm import TIMM_ARGUMENTS, create_loader

timm_data = pytest.importorskip("timm.data")
pytestmark = pytest.mark.filterwarnings("ignore:1 class folders hold no images")


def test_every_timm_argument_is_accepted_with_timms_default():
    ours = inspect.signature(create_loader).parameters
    theirs = inspect.signature(timm_data.create_loader).parameters
    assert set(theirs) <= set(ours) and set(theirs) == set(TIMM_ARGUMENTS)
    for name, p in theirs.items():
        if p.default is not inspect.Parameter.empty and name not in ("device", "img_dtype"):
            assert ours[name].default == p.default, name     # (device: None = auto; img_dtype: None = float32)


def test_the_docs_table_is_timm_arguments():
    """docs/TIMM.md's argument table says for each of timm's arguments what TIMM_ARGUMENTS says (one source)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "TIMM.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", text, re.M))
    assert table == TIMM_ARGUMENTS


REFUSED = [
    (dict(no_aug=True), "no_aug=True is not supported"),
    (dict(re_split=True), "re_split=True is not supported: augmentation splits"),
    (dict(num_aug_splits=2), "num_aug_splits=2 is not supported"),
    (dict(num_aug_repeats=3), "num_aug_repeats=3 is not supported: repeated augmentation"),
    (dict(train_crop_mode="rkrc"), "train_crop_mode='rkrc' is not supported"),
    (dict(vflip=0.5), "vflip=0.5 is not supported"),
    (dict(crop_mode="squash"), "crop_mode='squash' is not supported"),
    (dict(crop_border_pixels=4), "crop_border_pixels=4 is not supported"),
    (dict(collate_fn=lambda b: b), "collate_fn=.* is not supported: .*dali_relabel.timm.Mixup"),
    (dict(worker_seeding="seed"), "worker_seeding='seed' is not supported"),
    (dict(tf_preprocessing=True), "tf_preprocessing=True is not supported"),
    (dict(input_size_choices=[224, 256]), "input_size_choices=.* is not supported"),
    (dict(num_batches=10), "num_batches=10 is not supported"),
    (dict(interpolation="hamming"), "interpolation='hamming' is not supported"),
    (dict(auto_augment="augmix-m5-w4-d2"), "AugMix is not supported"),
    (dict(auto_augment="rand-m9-foo"), "unknown section 'foo'"),
    (dict(auto_augment="rand-m9-tfoo"), "unknown op set 'tfoo'"),
    (dict(auto_augment="original-m9"), "an AutoAugment policy takes only 'mstd"),
    (dict(auto_augment="trivial"), "unknown augmentation 'trivial'"),
    (dict(color_jitter=(0.4, 0.4, 0.4, 0.1)), "color_jitter hue=0.1 is not supported"),
    (dict(re_mode="noise"), "erase_mode must be one of 'const', 'rand', 'pixel', got 'noise'"),
    (dict(input_size=(3, 224, 192)), r"input_size=\(3, 224, 192\): the loaders make square crops"),
    (dict(input_size=(1, 224, 224)), "the loaders make RGB images"),
    (dict(device="mps"), "device=device\\(type='mps'\\): the loaders run on 'cuda' or 'cpu'"),
    (dict(distributed=True), "create_loader\\(distributed=True\\) needs an initialized torch.distributed"),
]


@pytest.mark.parametrize("kwargs,match", REFUSED, ids=[next(iter(k)) for k, _ in REFUSED])
def test_refused_arguments_are_named(tmp_path, kwargs, match):
    args = dict(dataset=tmp_path, store=tmp_path / "s.zarr", input_size=224, batch_size=4, is_training=True)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        create_loader(**{**args, **kwargs})


def test_training_arguments_are_refused_for_evaluation(tmp_path):
    with pytest.raises(ValueError, match=r"is_training=False\): re_prob, auto_augment only apply to training"):
        create_loader(tmp_path, 224, 4, re_prob=0.25, auto_augment="rand-m9")
    with pytest.raises(ValueError, match="interpolation='random' is not supported: evaluation uses one filter"):
        create_loader(tmp_path, 224, 4, interpolation="random")
    with pytest.raises(TypeError, match=r"is_training=True\): store= .* is required"):
        create_loader(tmp_path, 224, 4, is_training=True)


def test_training_loader_takes_timms_settings(small_demo):
    """resolve_data_config's dict as is; each argument lands in the loader's AugmentConfig; timm's rules (no colour
    jitter with RandAugment, but with 3a; the last partial batch dropped)."""
    import timm

    data_config = timm_data.resolve_data_config(model=timm.create_model("test_resnet", num_classes=10))
    ld = create_loader(small_demo.images, store=small_demo.labels, batch_size=5, is_training=True, scale=(0.3, 0.9),
                       ratio=(0.5, 2.0), hflip=0.25, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25,
                       re_mode="pixel", re_count=2, grayscale_prob=0.1, gaussian_blur_prob=0.2, num_workers=2,
                       device="cpu", seed=0, img_dtype=torch.float16, **data_config)
    a = ld.augment
    assert (a.crop_size, a.area, a.aspect, a.flip_prob) == (160, (0.3, 0.9), (0.5, 2.0), 0.25)
    assert (a.interpolation, a.mean, a.std, a.dtype) == (data_config["interpolation"], (0.5,) * 3, (0.5,) * 3,
                                                         "float16")
    assert (a.auto_augment, a.color_jitter, a.erase_prob, a.erase_mode, a.erase_count) == (
        "rand-m9-mstd0.5-inc1", None, 0.25, "pixel", 2)
    assert (a.grayscale_prob, a.blur_prob, ld.num_threads, ld.last_batch, ld.device) == (0.1, 0.2, 2, "drop", "cpu")
    assert len(ld) == 24 // 5
    images, targets = next(iter(ld))
    assert images.shape == (5, 3, 160, 160) and images.dtype == torch.float16 and targets.shape == (5, 10)
    jitter = create_loader(small_demo.images, store=small_demo.labels, input_size=32, batch_size=5, is_training=True,
                           auto_augment="3a", device="cpu")
    assert jitter.augment.color_jitter == (0.4, 0.4, 0.4)          # timm keeps colour jitter with 3a
    plain = create_loader(small_demo.images, store=small_demo.labels, input_size=32, batch_size=5, is_training=True,
                          device="cpu", color_jitter=None, last_batch="partial")
    assert plain.augment.color_jitter is None and len(plain) == 5


def test_distributed_false_reads_everything(small_demo):
    ld = create_loader(small_demo.images, input_size=32, batch_size=5, device="cpu", distributed=False)
    assert (ld.shard_id, ld.num_shards) == (0, 1)


def test_a_timm_image_dataset(small_demo, tmp_path):
    """A timm ImageDataset over a folder is read from its root, with the same labels; one that numbers classes
    otherwise (timm skips class folders without images; the demo has one) is refused."""
    with pytest.raises(ValueError, match="timm leaves out the class folders without images"):
        create_loader(timm_data.create_dataset("", root=str(small_demo.images)), input_size=32, batch_size=5)
    for folder in small_demo.images.iterdir():
        if any(folder.iterdir()):
            (tmp_path / folder.name).symlink_to(folder, target_is_directory=True)
    dataset = timm_data.create_dataset("", root=str(tmp_path))
    ld = create_loader(dataset, input_size=32, batch_size=5, device="cpu", outputs=("labels", "keys"))
    assert ld.num_samples == len(dataset) == 24
    by_key = {os.path.relpath(path, tmp_path): label for path, label in dataset.reader.samples}
    for labels, keys in map(on_cpu, ld):
        assert labels.tolist() == [by_key[k] for k in keys]


def test_evaluation_crops_are_timms(small_demo):
    """The evaluation loader against timm's own evaluation transform (create_transform(is_training=False)) on the
    same files: resize by crop_pct, centre crop, normalize (8×8 block means: the resize filters differ in detail,
    the geometry must not)."""
    config = dict(input_size=(3, 56, 56), interpolation="bilinear", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25),
                  crop_pct=0.8, crop_mode="center")
    ld = create_loader(small_demo.images, batch_size=6, device="cpu", outputs=("images", "keys"), **config)
    transform = timm_data.create_transform(**{k: v for k, v in config.items()}, is_training=False)

    def blocks(x):
        return x.reshape(3, 7, 8, 7, 8).mean((2, 4))

    for images, keys in map(on_cpu, ld):
        for image, key in zip(images.numpy(), keys):
            ref = transform(Image.open(small_demo.images / key).convert("RGB")).numpy()
            err = np.abs(blocks(image) - blocks(ref)).mean()
            assert err < 0.15, key
            assert np.abs(blocks(image) - blocks(np.roll(ref, 8, 2))).mean() > 2 * err, key
