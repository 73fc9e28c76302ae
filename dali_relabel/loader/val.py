"""ReLabelValLoader: the evaluation loader (resize the shorter side, centre-crop; hard labels; each image once).

    val_loader = ReLabelValLoader("imagenet/val", None, batch_size=256)        # folder labels
    for images, labels in val_loader:
        correct += (model(images).argmax(1) == labels).sum()
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

from ..config import EvalConfig, TargetConfig, check_choice, check_int, split_settings
from .base import EpochLoader
from .dataset import MISSING, LabeledImages

VAL_LOADER_OUTPUTS = ("images", "labels", "targets", "boxes", "rows", "keys", "valid", "real")
_NEED_STORE = ("targets", "boxes", "rows")


class ReLabelValLoader(EpochLoader):
    """Evaluation batches: each image exactly once per epoch, resized and centre-cropped as timm does.

    Every epoch reads the images in the same order (store-row order with a store, listing order without),
    split over the ranks as the training loader splits them; every rank has the same number of batches. A
    rank whose share runs out before the others' gets, in its last batch only, one repeated image marked not
    ``valid`` (only when ``N mod (world size × batch_size)`` is below the world size; a warning says so):
    count ``valid`` images (``labels[valid]``) for exact metrics under DDP.

    Args:
        images: an ImageFolder-style root, an image list or webdataset shards (as for ``ReLabelLoader``; shards
            are read in their stored order, labels without a store from their ``.cls`` members).
        store: the label store of these images (path, URL or ``LabelStore``), or None: labels are then the class
            folders' indices (or the list's labels).
        batch_size: images per batch (per process), a positive int.
        device: "auto" (default), "gpu" or "cpu", as for ``ReLabelLoader``.
        outputs: in order, from ``images`` [B, 3, crop, crop], ``labels`` [B] int64, ``targets`` [B, C] float32
            (the soft target of the central crop's box), ``boxes`` [B, 4] (that box, normalized (y0, x0, y1, x1)),
            ``rows`` [B] int64 store rows — these three need a store — ``keys`` (relative paths), ``valid``
            [B] bool, and ``real`` [B, num_classes] bool: the images' ImageNet-ReaL label sets (needs
            ``real_labels``; for ``ReaLAccuracy.update(logits, label_mask=real)``).
        config: an ``EvalConfig`` (crop_size, crop_pct, interpolation, mean, std, dtype, memory_format), or its
            fields as keywords (``crop_size=224, crop_pct=0.875``): resize the shorter side to
            ``floor(crop_size / crop_pct)`` (timm's rule), then centre-crop ``crop_size``.
        target_config: how ``targets`` are pooled (or its fields as keywords), as for ``ReLabelLoader``.
        real_labels: the ImageNet-ReaL labels of the images for the ``real`` output: a ``real.json`` path,
            ``"timm"`` (timm's copy), a mapping file name → classes, or a ``ReaLAccuracy``; every image must have
            an entry (checked here, by file name).
        missing, num_classes, num_threads, device_id, shard_id, num_shards, bank_dir, prefetch: as for
            ``ReLabelLoader``.
    """

    OWNER = "ReLabelValLoader"
    OUTPUTS = VAL_LOADER_OUTPUTS
    RANDOM = False

    def __init__(self, images: str | os.PathLike, store=None, batch_size: int | None = None, *,
                 device: str = "auto", outputs: Sequence[str] = ("images", "labels"), missing: str = "error",
                 num_classes: int | None = None, config: EvalConfig | None = None,
                 target_config: TargetConfig | None = None, num_threads: int = 4, device_id: int | None = None,
                 shard_id: int | None = None, num_shards: int | None = None,
                 bank_dir: str | os.PathLike | None = None, prefetch: int = 2, real_labels=None, **settings):
        if batch_size is None:
            raise TypeError("ReLabelValLoader: batch_size is required (a positive int)")
        configs = split_settings(self.OWNER, settings, {"config": config or EvalConfig,
                                                        "target_config": target_config or TargetConfig})
        self.config, self.target_config = configs["config"], configs["target_config"]
        self.missing = check_choice("missing", missing, MISSING)
        if num_classes is not None:
            check_int("num_classes", num_classes, low=1)
        outputs = self._check_outputs(outputs)
        if store is None and set(_NEED_STORE) & set(outputs):
            raise ValueError(f"ReLabelValLoader: the outputs {', '.join(o for o in outputs if o in _NEED_STORE)} "
                             f"need a label store (store=...)")
        if ("real" in outputs) != (real_labels is not None):
            raise ValueError("ReLabelValLoader: the 'real' output and real_labels= (ImageNet-ReaL's real.json) go "
                             "together: " + ("give real_labels=" if real_labels is None else "add 'real' to outputs"))
        data = LabeledImages.match(self.OWNER, images, store, missing=self.missing, num_classes=num_classes,
                                   need_labels="labels" in outputs)
        self.real = None
        if real_labels is not None:
            from ..metrics import as_real_accuracy

            self.real = as_real_accuracy(real_labels)
            self.real.check_keys(data.keys)
        self._setup(data=data, image_config=self.config, batch_size=batch_size, outputs=outputs, device=device,
                    seed=0, shuffle=False, last_batch="partial", num_threads=num_threads, device_id=device_id,
                    shard_id=shard_id, num_shards=num_shards, prefetch=prefetch)
        self.images, self.store, self.num_classes = data.images, data.store, data.num_classes
        self.num_missing = data.num_missing
        self.bank = None if self.store is None else self.store.materialize(cache_dir=bank_dir)
        self._check_graph()
        rest = len(data) % (self.num_shards * self.batch_size)
        if 0 < rest < self.num_shards:
            warnings.warn(f"ReLabelValLoader: {len(data)} images over {self.num_shards} ranks × batch_size "
                          f"{self.batch_size} leave {rest} images for the last step: ranks {rest}.."
                          f"{self.num_shards - 1} read one repeated image there to stay in step; count the 'valid' "
                          f"output's images for exact metrics", stacklevel=2)

    def _host_output(self, name: str, samples, valid):
        if name == "real":
            return self.real.label_mask(self._host_output("keys", samples, valid), self.num_classes)
        return super()._host_output(name, samples, valid)

    @property
    def num_samples(self) -> int:
        """Images per epoch, all ranks together (each exactly once)."""
        return len(self.data)

    def _build_pipeline(self, reader, epoch: int, names: tuple[str, ...]):
        from ..pipelines import relabel_val_pipeline

        return relabel_val_pipeline(
            batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id, seed=0,
            prefetch_queue_depth=self.prefetch, reader=reader,
            bank=self.bank, config=self.config, target_config=self.target_config, device=self.device, outputs=names,
            missing="onehot" if self.num_missing else "error")


__all__ = ["ReLabelValLoader", "VAL_LOADER_OUTPUTS"]
