"""ReLabelLoader: a drop-in replacement for a PyTorch ImageNet DataLoader that yields ReLabel soft targets.

    loader = ReLabelLoader("imagenet/train", "relabel.zarr", batch_size=256)
    for images, targets in loader:                      # targets: [B, C] probabilities
        loss = nn.CrossEntropyLoss()(model(images), targets)
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .distributed import process_ranks
from .fs import atomic_write_text, cache_root
from .image_folder import IMAGE_EXTENSIONS, ImageList, is_inside

LOADER_OUTPUTS = ("images", "targets", "labels", "boxes", "indices", "keys", "mirror")
# loader output name -> pipeline output name (keys are looked up from the rows on the host)
_PIPELINE_NAME = {"images": "images", "targets": "targets", "labels": "labels", "boxes": "boxes",
                  "indices": "rows", "keys": "rows", "mirror": "mirror"}
_POLICIES = ("partial", "fill", "drop")


class ReLabelLoader:
    """Iterates over (images, targets, ...) batches produced by a DALI pipeline with ReLabel soft targets.

    Args:
        images: an ImageFolder-style root (``<root>/<class>/<image>``) or a text file listing image paths
            (relative to the file's directory, optionally followed by a label).
        labels: the label store (path or fsspec URL) holding a map for each image, matched by relative path.
        batch_size: samples per batch (per process when distributed).
        device: "gpu" (decode with nvJPEG/the hardware decoder, labels on the GPU, CUDA tensors) or "cpu".
        crop_size: output image side.
        outputs: what each iteration yields, in order, from ``images`` [B, 3, crop, crop], ``targets`` [B, C]
            float32 probabilities, ``labels`` [B] int64 hard labels, ``boxes`` [B, 4] normalized crop boxes
            (y0, x0, y1, x1), ``indices`` [B] int64 store rows (-1 for images without a map), ``keys`` list of
            relative paths, ``mirror`` [B] int64 (1 where the crop was flipped).
        seed: pipeline seed (crops, flips, shuffling); None draws one.
        num_threads: DALI CPU threads.
        device_id: CUDA device (default: LOCAL_RANK under torchrun, else the current device).
        shard_id, num_shards: data-parallel shard; default: rank and world size of an initialized
            ``torch.distributed`` process group, else 0 and 1.
        last_batch: "partial" (default; the last batch is smaller, every image exactly once per epoch),
            "fill" (the last batch is padded with repeated images), or "drop".
        missing: "error" (default) when images have no label map, or "onehot" to use their folder label's
            one-hot vector as target (the count is reported).
        shuffle: reshuffle every epoch.
        num_classes: C if it differs from the number of class folders (otherwise that mismatch is an error).
        dtype: "float32" or "float16" images.
        area, aspect, flip_prob: random-resized-crop ranges and flip probability.
        temperature: softmax temperature of the targets.
        official_axes: reproduce the official relabel_imagenet targets exactly (its transposed box).
        label_type: "localized_multi" (ReLabel, default), "localized_single" (one-hot of the pooled argmax),
            "global_multi" (the whole map, ignoring the crop) or "global_single": the paper's factor analysis.
        bank_dir: where the served bank is cached (default: see ``LabelStore.materialize``).
        bank_memory: "device" or "host" (GPU only; see ``fn.relabel.lookup``).
        prefetch: DALI prefetch queue depth.
    """

    def __init__(self, images: str | os.PathLike, labels: str | os.PathLike, batch_size: int, *,
                 device: str = "gpu", crop_size: int = 224, outputs: Sequence[str] = ("images", "targets"),
                 seed: int | None = None, num_threads: int = 4, device_id: int | None = None,
                 shard_id: int | None = None, num_shards: int | None = None, last_batch: str = "partial",
                 missing: str = "error", shuffle: bool = True, num_classes: int | None = None,
                 dtype: str = "float32", area: tuple[float, float] = (0.08, 1.0),
                 aspect: tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5, temperature: float = 1.0,
                 official_axes: bool = False, label_type: str = "localized_multi",
                 bank_dir: str | os.PathLike | None = None, bank_memory: str = "device", prefetch: int = 2):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        from .pipelines import relabel_train_pipeline
        from .store import LabelStore

        outputs = tuple(outputs)
        bad = [o for o in outputs if o not in LOADER_OUTPUTS]
        if bad or not outputs:
            raise ValueError(f"unknown outputs {bad}; choose from {LOADER_OUTPUTS}")
        if device not in ("gpu", "cpu"):
            raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
        if last_batch not in _POLICIES:
            raise ValueError(f"last_batch must be one of {_POLICIES}, got {last_batch!r}")
        if missing not in ("error", "onehot"):
            raise ValueError(f"missing must be 'error' or 'onehot', got {missing!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.outputs, self.batch_size, self.device = outputs, batch_size, device
        # What the targets are, for code that pools more of them (e.g. ReLabelMix.for_loader).
        self.temperature, self.label_type, self.official_axes = temperature, label_type, official_axes

        self.images = ImageList.from_path(images)
        if not len(self.images):
            raise FileNotFoundError(f"{images}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        self._report_skipped()
        self.store = LabelStore.open(str(labels))
        if is_inside(self.store.url, self.images.root):  # else reported as a class count or class order problem
            raise ValueError(f"the label store {self.store.url} is inside the image folder {self.images.root}, where "
                             f"ImageFolder counts it as a class folder (shifting the labels); move it out")
        self.num_classes = self._check_classes(num_classes)
        rows = self._match_rows(missing)
        self.num_missing = int((rows >= self.store.num_samples).sum())
        self._check_labels(rows)
        self.bank = self.store.materialize(cache_dir=bank_dir)
        file_list = self._write_file_list(rows)

        # Shards follow an initialised torch.distributed process group (as DistributedSampler does).
        ranks = process_ranks(env=False)
        local_rank = ranks.local_rank
        self.shard_id = ranks.rank if shard_id is None else shard_id
        self.num_shards = ranks.world_size if num_shards is None else num_shards
        if device == "gpu":
            if not torch.cuda.is_available():
                raise RuntimeError("ReLabelLoader(device='gpu') needs CUDA; no GPU is visible. Use device='cpu'.")
            if device_id is None:
                device_id = local_rank if local_rank is not None else torch.cuda.current_device()
        else:
            device_id = None
        names = list(dict.fromkeys(_PIPELINE_NAME[o] for o in outputs))
        self._pipe = relabel_train_pipeline(
            batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
            prefetch_queue_depth=prefetch, file_root=str(self.images.root), file_list=str(file_list),
            bank=str(self.bank.path), num_classes=self.num_classes, device=device, crop_size=crop_size, area=area,
            aspect=aspect, flip_prob=flip_prob, dtype=dtype, shuffle=shuffle, shard_id=self.shard_id,
            num_shards=self.num_shards, reader_name="Reader", outputs=tuple(names), temperature=temperature,
            official_axes=official_axes, missing_from=self.store.num_samples if self.num_missing else None,
            bank_memory=bank_memory, label_type=label_type)
        self._pipe.build()
        policy = {"partial": LastBatchPolicy.PARTIAL, "fill": LastBatchPolicy.FILL, "drop": LastBatchPolicy.DROP}
        self._iter = DALIGenericIterator(self._pipe, names, reader_name="Reader",
                                         last_batch_policy=policy[last_batch], auto_reset=True)
        self._names = names

    # ---- setup checks -------------------------------------------------------------------------------

    def _report_skipped(self) -> None:
        imgs = self.images
        if imgs.skipped:
            warnings.warn(f"{len(imgs.skipped)} files under {imgs.root} are not images DALI decodes and were "
                          f"skipped (e.g. {', '.join(imgs.skipped[:3])})", stacklevel=3)
        if imgs.skipped_links:
            warnings.warn(f"{len(imgs.skipped_links)} symbolic links under {imgs.root} were not followed: "
                          f"{'; '.join(imgs.skipped_links[:3])}", stacklevel=3)
        if imgs.empty_classes:
            warnings.warn(f"{len(imgs.empty_classes)} class folders hold no images (kept as classes so that "
                          f"labels keep their folder index): {', '.join(imgs.empty_classes[:10])}", stacklevel=3)

    def _check_classes(self, num_classes: int | None) -> int:
        store_c = self.store.num_classes
        if num_classes is not None and num_classes != store_c:
            raise ValueError(f"num_classes={num_classes} but the label store {self.store.url} has {store_c} classes")
        folders = self.images.classes
        if num_classes is None and folders is not None and len(folders) != store_c:
            raise ValueError(f"the label store has {store_c} classes but {self.images.root} has {len(folders)} class "
                             f"folders; pass num_classes={store_c} to train on the store's {store_c} classes anyway")
        return store_c

    def _match_rows(self, missing: str) -> np.ndarray:
        """Store row of every image; N + folder label where it has no map and missing='onehot' (N = store size)."""
        index = {k: i for i, k in enumerate(self.store.keys.tolist())}
        if len(index) < self.store.num_samples:
            raise ValueError(f"the label store {self.store.url} holds {self.store.num_samples - len(index)} duplicate "
                             f"key(s): it is damaged or was written by another tool; `dali-relabel verify` lists them")
        rows = np.array([index.get(k, -1) for k in self.images.keys], np.int64)
        absent = np.flatnonzero(rows < 0)
        if len(absent):
            names = [self.images.keys[i] for i in absent[:10]]
            if missing == "error":
                raise KeyError(f"{len(absent)} of {len(rows)} images have no label map in {self.store.url}, e.g. "
                               f"{', '.join(names)}; annotate them, or pass missing='onehot' to use one-hot folder "
                               f"labels for them")
            labels = np.array(self.images.labels)[absent]
            if (labels < 0).any():
                raise ValueError("missing='onehot' needs a folder label for each image without a label map")
            rows[absent] = self.store.num_samples + labels
            print(f"ReLabelLoader: {len(absent)} of {len(rows)} images have no label map; they get one-hot "
                  f"targets of their folder label (e.g. {', '.join(names[:3])})", file=sys.stderr)
        return rows

    def _check_labels(self, rows: np.ndarray) -> None:
        present = rows < self.store.num_samples
        folder = np.array(self.images.labels)[present]
        stored = self.store.labels[rows[present]]
        known = (folder >= 0) & (stored >= 0)
        disagree = np.flatnonzero(known & (folder != stored))
        if len(disagree):
            keys = np.array(self.images.keys)[present][disagree[:5]]
            raise ValueError(f"{len(disagree)} images have a different label in the store than their folder index "
                             f"(e.g. {', '.join(keys)}): the store's class order differs from the sorted class "
                             f"folders of {self.images.root}")
        if "labels" in self.outputs and (stored < 0).any():
            raise ValueError(f"the store {self.store.url} has no label for {(stored < 0).sum()} images; the 'labels' "
                             f"output needs them")

    def _write_file_list(self, rows: np.ndarray) -> Path:
        """DALI file list ``<key> <row>`` (cached: one per image list × store)."""
        text = "".join(f"{k} {r}\n" for k, r in zip(self.images.keys, rows.tolist()))
        digest = hashlib.sha256(f"{self.images.root}\n{text}".encode()).hexdigest()[:16]
        path = cache_root() / "file_lists" / f"{digest}.txt"
        if not path.is_file():
            atomic_write_text(path, text)
        return path

    # ---- iteration ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._iter)

    def __iter__(self):
        keys, n_rows = self.store.keys, self.store.num_samples
        self.bank.check_files()  # a bank file shrunk under us: a clear error now instead of a SIGBUS later
        for batch in self._iter:
            data = batch[0]
            out = []
            for name in self.outputs:
                value = data[_PIPELINE_NAME[name]]
                if name in ("labels", "indices", "mirror"):
                    value = value.reshape(-1).long()
                    if name == "indices":
                        value = torch.where(value < n_rows, value, -1)
                elif name == "keys":
                    rows = value.reshape(-1).cpu().numpy()
                    value = [str(keys[r]) if r < n_rows else None for r in rows]
                out.append(value)
            yield tuple(out) if len(out) > 1 else out[0]

    @property
    def pipeline(self):
        """The underlying DALI pipeline (e.g. to inspect its graph)."""
        return self._pipe
