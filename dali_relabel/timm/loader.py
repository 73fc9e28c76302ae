"""``create_loader`` with ``timm.data.create_loader``'s arguments, building a ReLabelLoader / ReLabelValLoader.

    data_config = resolve_data_config(model=model)                       # timm
    loader = create_loader("imagenet/train", store="labels.zarr", batch_size=256, is_training=True,
                           auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel", **data_config)

Every argument of timm's ``create_loader`` is accepted by name, and either does what it does in timm (mapped onto
the DALI pipeline) or is refused with a message naming it, when it has a value this loader cannot honour. A few
only tune timm's PyTorch DataLoader (``pin_memory``, ``persistent_workers``, ...) and have nothing to tune here:
they are accepted with any value and documented as such (``TIMM_ARGUMENTS``, docs/TIMM.md).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..config import AugmentConfig, EvalConfig

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875          # timm's, for evaluation when crop_pct is None
_INTERPOLATIONS = {"bilinear", "bicubic", "nearest", "lanczos", "random"}

# timm's create_loader arguments that only tune its DataLoader, with what they mean here.
NO_EFFECT = {
    "pin_memory": "DALI hands over batches on the loader's device (CUDA tensors on the GPU)",
    "use_prefetcher": "the batches are normalized in DALI, on the device, either way",
    "use_multi_epochs_loader": "the loader builds each epoch's DALI pipeline itself (there are no workers)",
    "persistent_workers": "there are no worker processes (DALI threads: num_workers)",
}
# Training-only arguments with their timm defaults (refused with other values when is_training=False).
_TRAINING_DEFAULTS = {"no_aug": False, "re_prob": 0.0, "re_mode": "const", "re_count": 1, "re_split": False,
                      "train_crop_mode": None, "scale": None, "ratio": None, "hflip": 0.5, "vflip": 0.0,
                      "color_jitter": 0.4, "color_jitter_prob": None, "grayscale_prob": 0.0,
                      "gaussian_blur_prob": 0.0, "auto_augment": None, "num_aug_repeats": 0, "num_aug_splits": 0}


def create_loader(dataset, input_size, batch_size: int, is_training: bool = False, *, store=None,
                  no_aug: bool = False, re_prob: float = 0.0, re_mode: str = "const", re_count: int = 1,
                  re_split: bool = False, train_crop_mode: str | None = None, scale: Sequence[float] | None = None,
                  ratio: Sequence[float] | None = None, hflip: float = 0.5, vflip: float = 0.0,
                  color_jitter=0.4, color_jitter_prob: float | None = None, grayscale_prob: float = 0.0,
                  gaussian_blur_prob: float = 0.0, auto_augment: str | None = None, num_aug_repeats: int = 0,
                  num_aug_splits: int = 0, interpolation: str = "bilinear",
                  mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD,
                  num_workers: int = 1, distributed: bool = False, crop_pct: float | None = None,
                  crop_mode: str | None = None, crop_border_pixels: int | None = None, collate_fn=None,
                  pin_memory: bool = False, fp16: bool = False, img_dtype=None, device=None,
                  use_prefetcher: bool = True, use_multi_epochs_loader: bool = False,
                  persistent_workers: bool = True, worker_seeding: str = "all", tf_preprocessing: bool = False,
                  input_size_choices=None, batch_size_choices=None, batch_choice_weights=None,
                  batch_choice_seed: int = 0, batch_choice_schedule: str = "constant",
                  batch_schedule_epochs: int | None = None, batch_schedule_spread: float = 0.65,
                  batch_schedule_random_mix: float = 0.1, num_batches: int | None = None, **loader_kwargs):
    """A ReLabel loader configured by timm's ``create_loader`` arguments (see the module and docs/TIMM.md).

    Args:
        dataset: the images: an ImageFolder root or image list (a path), or a timm ``ImageDataset`` over a folder
            (its root is read; its transform is not used, as timm's create_loader replaces it too).
        input_size: ``S``, ``(S, S)`` or ``(3, S, S)`` (``resolve_data_config``'s): the crops are ``S × S``.
        batch_size: images per batch (per process).
        is_training: a ``ReLabelLoader`` (random-resized crops, ReLabel soft targets, timm's augmentations; the
            last partial batch dropped, as timm's training loader drops it) or a ``ReLabelValLoader`` (resize +
            centre crop by ``crop_pct``, hard labels; every image once).
        store: the label store of the images (required for training; for evaluation it adds the central crop's
            soft target to the available outputs).
        re_prob, re_mode, re_count: random erasing (timm's RandomErasing, after normalization).
        scale, ratio, hflip: the random-resized crop's area and aspect ranges, the flip probability.
        color_jitter, color_jitter_prob, grayscale_prob, gaussian_blur_prob, auto_augment: as in timm, in timm's
            order; colour jitter is off when ``auto_augment`` is set, unless that string contains "3a" (timm's
            rule). ``auto_augment``: RandAugment ("rand-m9-mstd0.5-inc1") or AutoAugment ("original", "v0", ...).
        interpolation: "bilinear", "bicubic", "nearest", "lanczos", or "random" (training: bilinear or bicubic
            per image).
        mean, std: normalization (timm's 0–1 values).
        num_workers: DALI's CPU threads (at least 1).
        distributed: shard over the ranks of the initialized ``torch.distributed`` process group (as timm's
            DistributedSampler); False reads every image on every process.
        crop_pct, crop_mode: evaluation: ``resize = floor(S / crop_pct)`` then a centre crop (crop_mode "center"
            or None); training ignores them, as timm does.
        fp16, img_dtype: the images' dtype (float32, float16 or bfloat16).
        device: None (the GPU when CUDA is visible, else the CPU), or a torch device / "cuda[:i]" / "cpu".
        loader_kwargs: the ReLabel loaders' own arguments (``seed``, ``outputs``, ``last_batch``, ``missing``,
            ``num_classes``, ``temperature``, ``transpose_box``, ``label_type``, ``prefetch``, ...).

    Raises:
        ValueError / TypeError: an argument this loader cannot honour (named, with what to do instead); the
            ReLabel loaders' own checks.
    """
    from ..loader import ReLabelLoader, ReLabelValLoader

    given = dict(no_aug=no_aug, re_prob=re_prob, re_mode=re_mode, re_count=re_count, re_split=re_split,
                 train_crop_mode=train_crop_mode, scale=scale, ratio=ratio, hflip=hflip, vflip=vflip,
                 color_jitter=color_jitter, color_jitter_prob=color_jitter_prob, grayscale_prob=grayscale_prob,
                 gaussian_blur_prob=gaussian_blur_prob, auto_augment=auto_augment, num_aug_repeats=num_aug_repeats,
                 num_aug_splits=num_aug_splits)
    _refuse_unsupported(is_training, given, crop_mode=crop_mode, crop_border_pixels=crop_border_pixels,
                        collate_fn=collate_fn, worker_seeding=worker_seeding, tf_preprocessing=tf_preprocessing,
                        input_size_choices=input_size_choices, batch_size_choices=batch_size_choices,
                        batch_choice_weights=batch_choice_weights, batch_schedule_epochs=batch_schedule_epochs,
                        num_batches=num_batches, interpolation=interpolation)
    images = dataset_root(dataset)
    size = crop_size_of(input_size)
    common: dict[str, Any] = dict(crop_size=size, interpolation=interpolation, mean=tuple(mean), std=tuple(std),
                                  dtype=_dtype(fp16, img_dtype))
    loader_kwargs.setdefault("num_threads", max(1, int(num_workers)))
    for key, value in {**_device(device), **_shards(distributed)}.items():
        loader_kwargs.setdefault(key, value)
    if not is_training:
        config = EvalConfig(crop_pct=DEFAULT_CROP_PCT if crop_pct is None else crop_pct, **common)
        return ReLabelValLoader(images, store, batch_size, config=config, **loader_kwargs)
    if store is None:
        raise TypeError("create_loader(is_training=True): store= (the label store of the training images) is "
                        "required: the targets are ReLabel's")
    if auto_augment and "3a" not in auto_augment:
        color_jitter = None            # timm: colour jitter is off with AutoAugment / RandAugment (but 3a)
    augment = AugmentConfig(area=tuple(scale) if scale is not None else (0.08, 1.0),
                            aspect=tuple(ratio) if ratio is not None else (3 / 4, 4 / 3), flip_prob=hflip,
                            auto_augment=auto_augment or None, color_jitter=color_jitter,
                            color_jitter_prob=color_jitter_prob, grayscale_prob=grayscale_prob,
                            blur_prob=gaussian_blur_prob, erase_prob=re_prob, erase_mode=re_mode,
                            erase_count=re_count, **common)
    loader_kwargs.setdefault("last_batch", "drop")      # timm's training loader: drop_last=True
    return ReLabelLoader(images, store, batch_size, augment=augment, **loader_kwargs)


def _refuse_unsupported(is_training: bool, given: dict, **other) -> None:
    def refuse(name: str, why: str) -> None:
        raise ValueError(f"create_loader: {name}={given.get(name, other.get(name))!r} is not supported: {why}")

    if not is_training:
        changed = [k for k, v in given.items()
                   if v != _TRAINING_DEFAULTS[k] and not (k == "color_jitter" and v is None)]
        if changed:
            raise ValueError(f"create_loader(is_training=False): {', '.join(changed)} only apply to training (timm "
                             f"ignores them for evaluation); leave them out of the evaluation loader's call")
        if other["interpolation"] == "random":
            refuse("interpolation", "evaluation uses one filter; give 'bilinear', 'bicubic', ...")
    if other["interpolation"] not in _INTERPOLATIONS:
        refuse("interpolation", f"DALI resizes with {', '.join(sorted(_INTERPOLATIONS))} (no 'box' or 'hamming')")
    if given["no_aug"]:
        refuse("no_aug", "timm's no_aug trains on resized centre crops, and ReLabel's targets are those of random "
               "crops; use ReLabelValLoader(..., outputs=('images', 'targets')) for the centre crops' soft targets")
    if given["re_split"] or given["num_aug_splits"]:
        name = "re_split" if given["re_split"] else "num_aug_splits"
        refuse(name, "augmentation splits (clean / augmented parts of a batch, AugMix's JSD loss) are not "
               "implemented in the DALI pipeline")
    if given["num_aug_repeats"]:
        refuse("num_aug_repeats", "repeated augmentation (timm's RepeatAugSampler: each image several times per "
               "epoch) needs several crops per decoded image, which the loader does not make yet")
    if given["train_crop_mode"] not in (None, "rrc"):
        refuse("train_crop_mode", "only random-resized crops ('rrc'): ReLabel's target is the crop box's")
    if given["vflip"]:
        refuse("vflip", "vertical flips are not implemented (the loaders' 'mirror' output and ReLabelMix's region "
               "policy know horizontal flips only)")
    if other["crop_mode"] not in (None, "center"):
        refuse("crop_mode", "evaluation crops are centre crops ('center'); 'squash' and 'border' are not implemented")
    if other["crop_border_pixels"] is not None:
        refuse("crop_border_pixels", "evaluation crops are centre crops by crop_pct")
    if other["collate_fn"] is not None:
        refuse("collate_fn", "the batches are made in DALI; for Mixup/CutMix use dali_relabel.timm.Mixup on the "
               "batches (timm's FastCollateMixup one-hots ReLabel's soft targets)")
    if other["worker_seeding"] != "all":
        refuse("worker_seeding", "there are no workers; the loader's seed= fixes every random draw")
    if other["tf_preprocessing"]:
        refuse("tf_preprocessing", "TensorFlow's preprocessing is not implemented")
    for name in ("input_size_choices", "batch_size_choices", "batch_choice_weights", "batch_schedule_epochs",
                 "num_batches"):
        if other[name] is not None:
            refuse(name, "scheduled input/batch sizes are not implemented (one crop size and batch size per loader)")


def crop_size_of(input_size) -> int:
    """The square crop side from timm's ``input_size`` (``S``, ``(S, S)`` or ``(3, S, S)``)."""
    size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    if len(size) == 3:
        if size[0] != 3:
            raise ValueError(f"create_loader: input_size={input_size!r}: the loaders make RGB images (3 channels)")
        size = size[1:]
    if len(size) == 2 and size[0] != size[1]:
        raise ValueError(f"create_loader: input_size={input_size!r}: the loaders make square crops (H = W)")
    if len(size) not in (1, 2) or not isinstance(size[0], int) or isinstance(size[0], bool) or size[0] < 1:
        raise ValueError(f"create_loader: input_size={input_size!r}: expected S, (S, S) or (3, S, S)")
    return size[0]


def dataset_root(dataset) -> str | os.PathLike:
    """The images of ``dataset``: a path as given, or the root of a timm ``ImageDataset`` over a folder."""
    if isinstance(dataset, (str, os.PathLike)):
        return dataset
    reader = getattr(dataset, "reader", None)
    root = getattr(reader, "root", None)
    if root is None or not os.path.isdir(root) or not hasattr(reader, "class_to_idx"):
        raise TypeError(f"create_loader: dataset must be an image folder or list (a path), or a timm ImageDataset "
                        f"reading a folder; got {type(dataset).__name__}")
    from ..image_folder import ImageList

    theirs = sorted(reader.class_to_idx, key=reader.class_to_idx.get)
    ours = ImageList.from_path(root).classes
    if theirs != ours:
        missing = sorted(set(ours or ()) - set(theirs))
        why = (f"timm leaves out the class folders without images ({', '.join(missing[:5])})" if missing and
               theirs == [c for c in ours if c not in missing] else "timm numbers them by a class map")
        raise ValueError(f"create_loader: the timm dataset over {root} numbers its classes differently from the "
                         f"sorted class folders the loaders (and label stores) use: {why}. Pass the folder itself "
                         f"(labels = sorted folder index) or an image list")
    return root


def _dtype(fp16: bool, img_dtype) -> str:
    if fp16:
        return "float16"
    return "float32" if img_dtype is None else img_dtype


def _device(device) -> dict:
    """timm's ``device`` → the loaders' ``device`` (and ``device_id``)."""
    if device is None:
        return {}
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return {"device": "gpu", **({} if device.index is None else {"device_id": device.index})}
    if device.type == "cpu":
        return {"device": "cpu"}
    raise ValueError(f"create_loader: device={device!r}: the loaders run on 'cuda' or 'cpu'")


def _shards(distributed: bool) -> dict:
    """distributed=True: the process group's ranks (as timm's DistributedSampler); False: one shard."""
    if not distributed:
        return {"shard_id": 0, "num_shards": 1}
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("create_loader(distributed=True) needs an initialized torch.distributed process group "
                           "(timm's DistributedSampler does too)")
    return {}


# What each timm argument does here (docs/TIMM.md renders this table; tests/training/test_timm_loader.py checks it
# covers timm's create_loader signature).
TIMM_ARGUMENTS = {
    "dataset": "an image folder/list path, or a timm ImageDataset over a folder (its root)",
    "input_size": "crop_size (square: S, (S, S), (3, S, S))",
    "batch_size": "batch_size",
    "is_training": "ReLabelLoader (True) or ReLabelValLoader (False)",
    "no_aug": "refused (True)",
    "re_prob": "erase_prob", "re_mode": "erase_mode", "re_count": "erase_count",
    "re_split": "refused (True)",
    "train_crop_mode": "'rrc' / None; others refused",
    "scale": "area", "ratio": "aspect", "hflip": "flip_prob", "vflip": "refused (> 0)",
    "color_jitter": "color_jitter (hue > 0 refused; off with auto_augment unless '3a', as in timm)",
    "color_jitter_prob": "color_jitter_prob", "grayscale_prob": "grayscale_prob",
    "gaussian_blur_prob": "blur_prob",
    "auto_augment": "auto_augment (RandAugment, AutoAugment; AugMix refused)",
    "num_aug_repeats": "refused (> 0)", "num_aug_splits": "refused (> 0)",
    "interpolation": "interpolation ('box', 'hamming' refused; 'random' for training)",
    "mean": "mean", "std": "std",
    "num_workers": "num_threads (DALI CPU threads)",
    "distributed": "shards over the process group (True) or none (False)",
    "crop_pct": "crop_pct (evaluation)", "crop_mode": "'center' / None; others refused",
    "crop_border_pixels": "refused (not None)",
    "collate_fn": "refused (not None): use dali_relabel.timm.Mixup",
    "pin_memory": "no effect: " + NO_EFFECT["pin_memory"], "fp16": "dtype='float16'", "img_dtype": "dtype",
    "device": "device / device_id (None: the GPU when CUDA is visible)",
    "use_prefetcher": "no effect: " + NO_EFFECT["use_prefetcher"],
    "use_multi_epochs_loader": "no effect: " + NO_EFFECT["use_multi_epochs_loader"],
    "persistent_workers": "no effect: " + NO_EFFECT["persistent_workers"],
    "worker_seeding": "'all'; others refused (seed= fixes every draw)",
    "tf_preprocessing": "refused (True)",
    "input_size_choices": "refused (not None)", "batch_size_choices": "refused (not None)",
    "batch_choice_weights": "refused (not None)", "batch_choice_seed": "no effect without input_size_choices",
    "batch_choice_schedule": "no effect without input_size_choices",
    "batch_schedule_epochs": "refused (not None)",
    "batch_schedule_spread": "no effect without input_size_choices",
    "batch_schedule_random_mix": "no effect without input_size_choices",
    "num_batches": "refused (not None)",
}

__all__ = ["DEFAULT_CROP_PCT", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD", "NO_EFFECT", "TIMM_ARGUMENTS",
           "create_loader", "crop_size_of", "dataset_root"]
