"""ReLabelLoader: a drop-in replacement for a PyTorch ImageNet DataLoader that yields ReLabel soft targets.

    loader = ReLabelLoader("imagenet/train", "relabel.zarr", batch_size=256)
    for images, targets in loader:                      # targets: [B, C] probabilities
        loss = nn.CrossEntropyLoss()(model(images), targets)
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

from ..config import AugmentConfig, TargetConfig, check_choice, check_int, renamed, split_settings
from .base import EpochLoader
from .dataset import MISSING, LabeledImages

LOADER_OUTPUTS = ("images", "targets", "labels", "boxes", "rows", "keys", "mirror", "valid")


class ReLabelLoader(EpochLoader):
    """Iterates over (images, targets, ...) batches of random-resized crops with ReLabel soft targets (DALI).

    It keeps the ``DataLoader`` contract: each ``iter(loader)`` is a fresh, complete epoch (also after a
    ``break``); ``len(loader)`` is exact; ``seed`` fixes the order, the crops and the flips of every epoch
    (each rank's from ``(seed, epoch, rank)``); ``state_dict()`` / ``load_state_dict()`` resume half-way through
    an epoch with exactly the batches the uninterrupted run would have yielded; ``set_epoch`` (also as
    ``loader.sampler.set_epoch``) for scripts written for ``DistributedSampler``.

    Args:
        images: an ImageFolder-style root (``<root>/<class>/<image>``), a text file listing image paths
            (relative to the file's directory, optionally followed by a label), or webdataset shards (a directory of
            ``.tar`` files, ``train-{000000..000127}.tar``, a glob, a wids ``shardindex.json`` or a list of tar
            paths; epochs are then read tar by tar: docs/SHARDS.md).
        store: the label store (a ``LabelStore``, or its path or fsspec URL) holding a map for each image,
            matched by relative path. (``labels=`` is its deprecated name.)
        batch_size: images per batch (per process when distributed), a positive int.
        device: "auto" (default: the GPU when CUDA is visible, else the CPU; said once on stderr), "gpu"
            (decode with nvJPEG / the hardware decoder, labels on the GPU, CUDA tensors) or "cpu".
        outputs: what each iteration yields, in order, from ``images`` [B, 3, crop, crop] (dtype and memory
            format as configured), ``targets`` [B, C] float32 probabilities, ``labels`` [B] int64 hard labels,
            ``boxes`` [B, 4] normalized crop boxes (y0, x0, y1, x1), ``rows`` [B] int64 store rows (-1 for images
            without a map; ``indices`` is its deprecated name), ``keys`` list of the images' relative paths,
            ``mirror`` [B] int64 (1 where the crop was flipped), ``valid`` [B] bool (False for images repeated
            only to fill a batch; see ``last_batch``). images/targets/labels are on the device, the rest on the CPU.
        seed: seed of the order, crops and flips (a non-negative int). None draws one from torch's global
            generator (``torch.manual_seed`` / ``seed_everything`` fix it; under torch.distributed rank 0's is
            used by all); ``loader.seed`` tells which.
        shuffle: a new order every epoch (default); False reads the images in store-row order every epoch.
        last_batch: "partial" (default: every image exactly once per epoch; the last batch is smaller), "fill"
            (the last batch is completed with repeated images, not ``valid``) or "drop" (only full batches).
            Details, also for several ranks: ``dali_relabel.loader.epochs``.
        missing: "error" (default) when images have no label map, or "onehot" to use their folder label's
            one-hot vector as target (the count is reported).
        num_classes: C if it differs from the number of class folders (otherwise that mismatch is an error).
        augment: an ``AugmentConfig`` (crop_size, area, aspect, flip_prob, interpolation, mean, std, dtype,
            memory_format); its fields may also be given one by one as keywords (``crop_size=176``).
        target_config: a ``TargetConfig`` (temperature, transpose_box, label_type, bank_memory); its fields may
            also be given as keywords (``temperature=0.5``; ``official_axes`` is ``transpose_box``'s old name).
        num_threads: DALI CPU threads. prefetch: DALI prefetch queue depth.
        device_id: CUDA device (default: LOCAL_RANK under torchrun, else the current device).
        shard_id, num_shards: data-parallel shard; default: rank and world size of an initialized
            ``torch.distributed`` process group, else 0 and 1.
        bank_dir: where the served bank is cached (default: see ``LabelStore.materialize``).

    Raises (at construction, each naming the argument and its valid values): ``TypeError`` / ``ValueError``.
    """

    OWNER = "ReLabelLoader"
    OUTPUTS = LOADER_OUTPUTS
    RANDOM = True

    def __init__(self, images: str | os.PathLike, store=None, batch_size: int | None = None, *,
                 device: str = "auto", outputs: Sequence[str] = ("images", "targets"), seed: int | None = None,
                 shuffle: bool = True, last_batch: str = "partial", missing: str = "error",
                 num_classes: int | None = None, augment: AugmentConfig | None = None,
                 target_config: TargetConfig | None = None, num_threads: int = 4, device_id: int | None = None,
                 shard_id: int | None = None, num_shards: int | None = None,
                 bank_dir: str | os.PathLike | None = None, prefetch: int = 2, **settings):
        if "labels" in settings:
            renamed(self.OWNER, "labels", "store")
            if store is not None:
                raise TypeError("ReLabelLoader: got both store and labels (its old name)")
            store = settings.pop("labels")
        if store is None:
            raise TypeError("ReLabelLoader: store (the label store of the images) is required")
        if batch_size is None:
            raise TypeError("ReLabelLoader: batch_size is required (a positive int)")
        configs = split_settings(self.OWNER, settings, {"augment": augment or AugmentConfig,
                                                        "target_config": target_config or TargetConfig})
        self.augment, self.target_config = configs["augment"], configs["target_config"]
        self.missing = check_choice("missing", missing, MISSING)
        if num_classes is not None:
            check_int("num_classes", num_classes, low=1)
        outputs = self._check_outputs(outputs)
        data = LabeledImages.match(self.OWNER, images, store, missing=self.missing, num_classes=num_classes,
                                   need_labels="labels" in outputs)
        self._setup(data=data, image_config=self.augment, batch_size=batch_size, outputs=outputs, device=device,
                    seed=seed, shuffle=shuffle, last_batch=last_batch, num_threads=num_threads,
                    device_id=device_id, shard_id=shard_id, num_shards=num_shards, prefetch=prefetch)
        self.images, self.store, self.num_classes = data.images, data.store, data.num_classes
        self.num_missing = data.num_missing
        self.bank = self.store.materialize(cache_dir=bank_dir)
        self._check_graph()

    # What the targets are, for code that pools more of them (e.g. ReLabelMix.for_loader).
    @property
    def temperature(self) -> float:
        return self.target_config.temperature

    @property
    def label_type(self) -> str:
        return self.target_config.label_type

    @property
    def transpose_box(self) -> bool:
        return self.target_config.transpose_box

    @property
    def official_axes(self) -> bool:
        warnings.warn("ReLabelLoader.official_axes is deprecated, use .transpose_box (same meaning)",
                      DeprecationWarning, stacklevel=2)
        return self.target_config.transpose_box

    def _build_pipeline(self, reader, epoch: int, names: tuple[str, ...]):
        from ..pipelines import relabel_train_pipeline

        seed = self.augment_seed(epoch)
        return relabel_train_pipeline(
            batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id, seed=seed,
            prefetch_queue_depth=self.prefetch, reader=reader,
            bank=self.bank, augment=self.augment, target_config=self.target_config, device=self.device,
            outputs=names, missing="onehot" if self.num_missing else "error", augment_seed=seed)


__all__ = ["LOADER_OUTPUTS", "ReLabelLoader"]
