"""Crops, maps and runners for comparing label_pool's official mode with relabel_imagenet's own arithmetic.

The crops are drawn as the official code draws them (torchvision's RandomResizedCrop.get_params) on images
of assorted sizes: ImageNet's common sizes, sizes that are multiples of the map's 15 cells (where crops
often span whole cells, and a float64 geometry takes another sample count than the official float32 one),
and random sizes; plus crops built to span whole numbers of cells. The operator gets its box the way the
training pipeline makes it (``pipelines.crop.normalized_corners`` on the pixel window, inside DALI); the
official code gets the float32 coordinates it assembles itself (``official_coords``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def

from torchvision.ops import roi_align

from dali_relabel.pipelines.crop import normalized_corners
from dali_relabel.testing.official import official_coords, official_random_resized_crop
from dali_relabel.testing.synthetic import synthetic_label_maps

MAP = 15  # the official maps: 15 x 15, top-5, ImageNet-1k
K, C = 5, 1000

# ImageNet's most common sizes (H, W), and sizes whose crops often span whole cells.
IMAGENET_SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (500, 500), (480, 640), (640, 480), (768, 1024)]
CELL_MULTIPLE_SIZES = [(150, 150), (225, 300), (300, 225), (300, 300), (450, 600), (600, 450), (375, 375), (120, 90)]


@dataclasses.dataclass
class Crops:
    """N crops: image sizes (H, W), pixel windows (i, j, h, w), the official float32 coordinates [N, 4]."""

    sizes: list[tuple[int, int]]
    windows: list[tuple[int, int, int, int]]
    coords: torch.Tensor

    def __len__(self) -> int:
        return len(self.sizes)


def whole_cell_windows(rng: np.random.Generator, n: int) -> tuple[list, list]:
    """Crops spanning whole numbers of map cells on both axes (image sides multiples of 15 pixels)."""
    sizes, windows = [(125, 125)], [(42, 42, 50, 50)]  # rows 0.336 -> 0.736: six cells (the example)
    while len(sizes) < n:
        cell_h, cell_w = rng.integers(1, 60, size=2)
        hh, ww = MAP * int(cell_h), MAP * int(cell_w)
        a, b = np.sort(rng.choice(MAP + 1, 2, replace=False))
        c, d = np.sort(rng.choice(MAP + 1, 2, replace=False))
        sizes.append((hh, ww))
        windows.append((int(a) * int(cell_h), int(c) * int(cell_w), int(b - a) * int(cell_h), int(d - c) * int(cell_w)))
    return sizes, windows


@functools.cache
def official_crops(n: int = 10_000, seed: int = 0, whole_cells: int = 400) -> Crops:
    """``n`` crops: ``whole_cells`` built to span whole cells, the rest drawn by the official RandomResizedCrop
    (scale (0.08, 1), ratio (3/4, 4/3)) on images a third ImageNet-sized, a third of sides multiple of 15 and a
    third of random sides in [16, 1200]."""
    rng = np.random.default_rng(seed)
    sizes, windows = whole_cell_windows(rng, whole_cells)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in range(n - whole_cells):
            kind = m % 3
            if kind == 0:
                hw = IMAGENET_SIZES[rng.integers(len(IMAGENET_SIZES))]
            elif kind == 1:
                hw = CELL_MULTIPLE_SIZES[rng.integers(len(CELL_MULTIPLE_SIZES))]
            else:
                hw = (int(rng.integers(16, 1201)), int(rng.integers(16, 1201)))
            sizes.append(hw)
            windows.append(official_random_resized_crop(*hw))
    return Crops(sizes, windows, official_coords(windows, sizes))


@functools.cache
def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_label_maps(n, height=MAP, width=MAP, k=K, num_classes=C, seed=seed)


@functools.cache
def official_maps(n: int, score_dtype: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Realistic 15x15 top-5 maps of C=1000 classes; float32 ones carry float32 precision (the official release)."""
    scores, classes = _synthetic(n, seed)
    if score_dtype == "float32":
        jitter = np.random.default_rng(seed).uniform(1e-4, 1e-3, scores.shape[:-1] + (1,)).astype(np.float32)
        scores = scores.astype(np.float32) + jitter  # the same for all K of a cell: the order is kept
    return scores, classes


def official_tensors(scores: np.ndarray, classes: np.ndarray) -> torch.Tensor:
    """The official release's per-image tensors [B, 2, K, H, W] (float32, classes as floats)."""
    return torch.stack([torch.from_numpy(scores.astype(np.float32)),
                        torch.from_numpy(classes.astype(np.float32))], 1).permute(0, 1, 4, 2, 3)


def official_logits_of_present_classes(maps_topk: torch.Tensor, coords: torch.Tensor, num_classes: int) -> torch.Tensor:
    """official_pooled_logits, bit for bit, ~50x cheaper: torchvision's roi_align on the official float32 planes
    of only the classes present in each map (the official code pools all C planes; each output is computed
    from its own plane alone by the same float32 operations, and an all-zero plane pools to exactly 0).

    Args: as ``official_pooled_logits``. Returns: ``[B, C]`` float32.
    """
    w = maps_topk.shape[-1]
    return roi_align_of_present_classes(maps_topk, coords.to(maps_topk.dtype) * w - 0.5, num_classes)


def roi_align_of_present_classes(maps_topk: torch.Tensor, boxes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """torchvision roi_align (1x1, aligned=False) of the dense maps over ``boxes`` [B, 4] (x1, y1, x2, y2 in map
    pixels), computed on the planes of the classes present only (bit for bit the dense result). [B, C]."""
    b, _, k, h, w = maps_topk.shape
    classes = maps_topk[:, 1].long().reshape(b, -1)
    # Each sample's distinct classes get local channels 0, 1, ... in class order (padding: class C, dropped).
    srt, order = torch.sort(classes, dim=1)
    new = torch.ones_like(srt, dtype=torch.bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    rank = torch.cumsum(new, dim=1) - 1
    local_index = torch.empty_like(rank).scatter_(1, order, rank)
    channels = int(rank.max()) + 1
    class_of_channel = torch.full((b, channels), num_classes, dtype=torch.long).scatter_(1, rank, srt)
    local = torch.zeros(b, channels, h * w, dtype=maps_topk.dtype)
    local.scatter_(1, local_index.view(b, k, h * w), maps_topk[:, 0].reshape(b, k, h * w))  # the official scatter_
    batch_index = torch.arange(b, dtype=local.dtype).view(b, 1)
    boxes = torch.cat([batch_index, boxes.to(local.dtype)], 1)
    pooled = roi_align(local.view(b, channels, h, w), boxes, output_size=(1, 1)).view(b, channels)
    out = torch.zeros(b, num_classes + 1, dtype=local.dtype).scatter_(1, class_of_channel, pooled)
    return out[:, :num_classes]


class PipelineLabelPool:
    """label_pool fed as the training pipeline feeds it: the box from the pixel window by normalized_corners.

    Returns ``(outputs [N, C], rel_start [N, 2], rel_end [N, 2])``.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 256, **op_args):
        self.device, self.batch_size, self.op_args = device, batch_size, op_args
        self.pipes: dict = {}

    def _pipe(self, score_dtype):
        if score_dtype not in self.pipes:
            device, op_args = self.device, self.op_args

            @pipeline_def(batch_size=self.batch_size, num_threads=2, device_id=0 if device == "gpu" else None,
                          prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
            def pipe():
                shape_hwc = fn.external_source(name="shape_hwc")  # as fn.peek_image_shape gives it: int64 [3]
                anchor = fn.external_source(name="anchor")        # as fn.random_crop_generator: int32 [2]
                window = fn.external_source(name="window")
                scores = fn.external_source(name="scores")
                classes = fn.external_source(name="classes")
                rel_start, rel_end = normalized_corners(shape_hwc, anchor, window)
                if device == "gpu":
                    scores, classes = scores.gpu(), classes.gpu()
                out = fn.relabel.label_pool(scores, classes, rel_start=rel_start, rel_end=rel_end, device=device,
                                            **op_args)
                return out, rel_start, rel_end

            p = pipe()
            p.build()
            self.pipes[score_dtype] = p
        return self.pipes[score_dtype]

    def __call__(self, crops: Crops, scores: np.ndarray, classes: np.ndarray):
        p = self._pipe(scores.dtype)
        outs: list[list[np.ndarray]] = [[], [], []]
        for lo in range(0, len(crops), self.batch_size):
            hi = min(len(crops), lo + self.batch_size)
            p.feed_input("shape_hwc", [np.array([h, w, 3], np.int64) for h, w in crops.sizes[lo:hi]])
            p.feed_input("anchor", [np.array(win[:2], np.int32) for win in crops.windows[lo:hi]])
            p.feed_input("window", [np.array(win[2:], np.int32) for win in crops.windows[lo:hi]])
            p.feed_input("scores", list(scores[lo:hi]))
            p.feed_input("classes", list(classes[lo:hi]))
            for acc, out in zip(outs, p.run()):
                if hasattr(out, "as_cpu"):
                    out = out.as_cpu()
                acc.append(np.stack([np.array(out[i]) for i in range(len(out))]))
        return tuple(np.concatenate(a) for a in outs)
