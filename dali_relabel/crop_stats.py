"""How often random-resized crops miss the labelled object: the ReLabel paper's motivation figure.

For each image, ``crops`` random-resized-crop windows are drawn by the training pipeline's own crop
generator (``pipelines.random_resized_crop_box``: ``fn.peek_image_shape`` + ``fn.random_crop_generator``,
in a CPU DALI pipeline fed the image's encoded bytes), so the statistics describe the crops training
really sees. Each window's IoU with the object is the largest IoU over the image's object boxes. The
paper reports, for 100 crops per ImageNet validation image: 76.5% with IoU < 0.5, 8% with IoU = 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .image_folder import key_problem


@dataclasses.dataclass(frozen=True)
class CropStats:
    """IoU statistics of random-resized crops against object boxes.

    Attributes:
        keys: the images, in order.
        crops: [N, crops, 4] normalized crop windows (y0, x0, y1, x1).
        iou: [N, crops] IoU of each window with its image's best-matching object box.
    """

    keys: list[str]
    crops: np.ndarray
    iou: np.ndarray

    @property
    def fraction_below_half(self) -> float:
        return float((self.iou < 0.5).mean())

    @property
    def fraction_zero(self) -> float:
        return float((self.iou == 0).mean())

    def summary(self) -> dict:
        return {"images": len(self.keys), "crops_per_image": int(self.iou.shape[1]),
                "fraction_iou_below_0.5": self.fraction_below_half, "fraction_iou_zero": self.fraction_zero,
                "mean_iou": float(self.iou.mean()), "median_iou": float(np.median(self.iou))}


def box_iou(crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of every crop with every box, both normalized (y0, x0, y1, x1): [n, 4] × [m, 4] → [n, m].

    IoU is invariant to scaling each axis, so normalized coordinates give the pixel IoU. Disjoint or
    merely touching boxes have an intersection of exactly 0.
    """
    crops, boxes = np.asarray(crops, np.float64)[:, None], np.asarray(boxes, np.float64)[None]
    ih = np.clip(np.minimum(crops[..., 2], boxes[..., 2]) - np.maximum(crops[..., 0], boxes[..., 0]), 0, None)
    iw = np.clip(np.minimum(crops[..., 3], boxes[..., 3]) - np.maximum(crops[..., 1], boxes[..., 1]), 0, None)
    inter = ih * iw
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(crops) + area(boxes) - inter)


def sample_crops(paths: Sequence[str | os.PathLike], *, crops: int = 100, area=(0.08, 1.0), aspect=(3 / 4, 4 / 3),
                 seed: int = 0, num_threads: int = 2, progress: bool = True) -> np.ndarray:
    """``crops`` random-resized-crop windows per image, from the training pipeline's crop generator.

    Returns:
        [len(paths), crops, 4] float32 normalized (y0, x0, y1, x1).
    """
    from nvidia.dali import fn, pipeline_def
    from tqdm import tqdm

    from .pipelines import random_resized_crop_box

    current: list[np.ndarray] = []

    @pipeline_def(batch_size=crops, num_threads=num_threads, device_id=None, seed=seed, prefetch_queue_depth=1,
                  exec_async=False, exec_pipelined=False)
    def windows():
        # One image per iteration, repeated: each copy gets its own random window.
        jpegs = fn.external_source(source=lambda: [current[0]] * crops, batch=True)
        _, _, start, end = random_resized_crop_box(jpegs, area=area, aspect=aspect)
        return start, end

    pipe = windows()
    pipe.build()
    out = np.zeros((len(paths), crops, 4), np.float32)
    for i, path in enumerate(tqdm(paths, desc="random crops", unit="img", disable=not progress)):
        current[:] = [np.frombuffer(Path(path).read_bytes(), np.uint8)]
        start, end = pipe.run()
        out[i] = np.concatenate([np.stack([np.array(t) for t in start]), np.stack([np.array(t) for t in end])], 1)
    return out


def crop_iou_stats(images: str | os.PathLike, boxes: dict[str, np.ndarray], *, crops: int = 100, area=(0.08, 1.0),
                   aspect=(3 / 4, 4 / 3), seed: int = 0, num_threads: int = 2, progress: bool = True) -> CropStats:
    """IoU statistics of random-resized crops of the images under ``images`` with their object boxes.

    Args:
        images: directory the keys are relative to.
        boxes: key → [m, 4] normalized object boxes (y0, x0, y1, x1), m ≥ 1.
        crops: windows per image. area, aspect: the crop ranges (the loader's defaults).
        seed: pipeline seed.
    """
    keys = sorted(boxes)
    windows = sample_crops([Path(images) / k for k in keys], crops=crops, area=area, aspect=aspect, seed=seed,
                           num_threads=num_threads, progress=progress)
    iou = np.stack([box_iou(w, boxes[k]).max(1) for w, k in zip(windows, keys)])
    return CropStats(keys=keys, crops=windows, iou=iou)


def load_boxes(path: str | os.PathLike, images: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Object boxes from JSON: ``{key: [box, ...]}``, each box ``[y0, x0, y1, x1]`` normalized or
    ``{"box": [y0, x0, y1, x1], ...}`` (the demo dataset's ``objects.json`` entries).

    Raises:
        ValueError naming the key for malformed boxes; FileNotFoundError for keys with no image under ``images``.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a JSON object {{image key: [[y0, x0, y1, x1], ...]}}")
    out = {}
    for key, entries in raw.items():
        problem = key_problem(key)
        if problem is not None:  # a key never names a file outside the image folder
            raise ValueError(f"{path}: the key {key!r} {problem}")
        try:
            arr = np.array([e["box"] if isinstance(e, dict) else e for e in entries], np.float64).reshape(-1, 4)
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"{path}: {key}: boxes must be [y0, x0, y1, x1] lists or {{'box': [...]}} objects") from None
        ok = (arr >= 0).all(1) & (arr <= 1).all(1) & (arr[:, 0] < arr[:, 2]) & (arr[:, 1] < arr[:, 3])
        if not len(arr) or not ok.all():
            bad = arr[~ok][0].tolist() if len(arr) else "none"
            raise ValueError(f"{path}: {key}: box {bad} is not a normalized (y0, x0, y1, x1) box with 0 <= y0 < y1 <= 1 "
                             f"and 0 <= x0 < x1 <= 1 (divide pixel boxes by the image height and width)")
        out[key] = arr
    if images is not None:
        absent = [k for k in out if not (Path(images) / k).is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} keys of {path} have no image under {images}, e.g. "
                                    f"{', '.join(absent[:5])}")
    return out


def crop_confidence(stats: CropStats, store, *, temperature: float = 1.0) -> np.ndarray:
    """The confidence of each crop's ReLabel supervision: its soft target's largest probability.

    Each target is pooled from the image's label map in ``store`` over the crop's window by
    ``fn.relabel.label_pool`` (the training operator, run eagerly on the CPU).

    Args:
        stats: crops and IoUs from :func:`crop_iou_stats` (its keys must be keys of ``store``).
        store: a :class:`~dali_relabel.store.LabelStore` holding the images' maps.

    Returns:
        [N, crops] float32 max probabilities, aligned with ``stats.iou``.
    """
    from .ops.eager import pool_maps

    n, crops = stats.iou.shape
    scores, classes = store.read(store.rows_of(stats.keys))
    windows = stats.crops.reshape(n * crops, 4)
    targets = pool_maps(np.repeat(scores, crops, axis=0), np.repeat(classes, crops, axis=0), windows[:, :2],
                        windows[:, 2:], num_classes=store.num_classes, temperature=temperature)
    return targets.max(dim=1).values.numpy().reshape(n, crops)


def confidence_by_iou(iou: np.ndarray, confidence: np.ndarray, bins: int = 10) -> dict:
    """Mean confidence per IoU bin (the curve of the paper's "confidence of supervision" figure).

    Returns:
        ``{"iou_bin_edges": [bins + 1], "mean_confidence": [bins] (NaN for empty bins), "crops": [bins]}``.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(iou.ravel(), edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sums = np.bincount(which, weights=confidence.ravel(), minlength=bins)
    with np.errstate(invalid="ignore"):
        means = sums / counts
    return {"iou_bin_edges": edges.tolist(), "mean_confidence": [float(m) for m in means],
            "crops": counts.tolist()}


def confidence_summary(stats: CropStats, store, *, temperature: float = 1.0, bins: int = 10
                       ) -> tuple[np.ndarray, dict]:
    """The confidence of supervision of ``stats``' crops (what ``dali-relabel crop-stats --labels`` reports).

    Returns:
        ``confidence`` [N, crops] (:func:`crop_confidence`) and a JSON-ready summary: the store, temperature,
        number of classes, the mean confidence of all crops, of crops with IoU < 0.5 and with IoU >= 0.5 (None
        when there are none), and the curve of :func:`confidence_by_iou` (an empty bin's mean is None: JSON has
        no NaN).

    Raises:
        KeyError: images of ``stats`` without a map in ``store`` (the message names them).
    """
    conf = crop_confidence(stats, store, temperature=temperature)
    curve = confidence_by_iou(stats.iou, conf, bins=bins)
    curve["mean_confidence"] = [None if np.isnan(m) else m for m in curve["mean_confidence"]]
    mean = lambda v: float(v.mean()) if v.size else None  # noqa: E731
    return conf, {"store": str(store.url), "temperature": temperature, "num_classes": store.num_classes,
                  "mean_confidence_all": float(conf.mean()),
                  "mean_confidence_iou_below_0.5": mean(conf[stats.iou < 0.5]),
                  "mean_confidence_iou_from_0.5": mean(conf[stats.iou >= 0.5]), **curve}


def plot_confidence(iou: np.ndarray, confidence: np.ndarray, path: str | os.PathLike, *, title: str = "",
                    bins: int = 10) -> None:
    """2-D histogram of target confidence against crop IoU, with the mean curve (``bins`` IoU bins), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = confidence_by_iou(iou, confidence, bins=bins)
    centres = (np.array(curve["iou_bin_edges"][:-1]) + np.array(curve["iou_bin_edges"][1:])) / 2
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    weights = np.full(iou.size, 100.0 / iou.size)
    hist = ax.hist2d(iou.ravel(), confidence.ravel(), bins=[20, 20], range=[[0, 1], [0, 1]], weights=weights,
                     cmap="Blues", cmin=1e-9)
    fig.colorbar(hist[3], ax=ax, label="% of crops")
    ax.plot(centres, curve["mean_confidence"], "o-", color="tab:red", label="mean per IoU bin")
    ax.set_xlabel("IoU of the random-resized crop with the object box")
    ax.set_ylabel("ReLabel target: max probability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["CropStats", "box_iou", "confidence_by_iou", "confidence_summary", "crop_confidence", "crop_iou_stats",
           "load_boxes", "plot_confidence", "sample_crops"]
