"""The "confidence of supervision" statistics: each crop's target max probability, pooled exactly, binned by IoU."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.crop_stats import confidence_by_iou, crop_confidence, crop_iou_stats, plot_confidence
from dali_relabel.testing.demo_dataset import build_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=5, height=120, width=160, progress=False)


def test_crop_confidence_equals_the_reference_pooling(demo):
    stats = crop_iou_stats(demo.images, demo.labelled_boxes(), crops=12, seed=3, progress=False)
    store = LabelStore.open(demo.labels)
    conf = crop_confidence(stats, store)
    assert conf.shape == stats.iou.shape
    for i, key in enumerate(stats.keys):
        scores, classes = store.read(store.row_of(key))
        for j in range(0, 12, 5):
            y0, x0, y1, x1 = stats.crops[i, j].tolist()
            target = slow_label_pool(scores.astype(np.float32), classes, (y0, x0), (y1, x1), store.num_classes)
            assert conf[i, j] == pytest.approx(float(np.max(target)), abs=1e-6)
    assert (conf > 1.0 / store.num_classes).all() and (conf <= 1.0).all()


def test_confidence_by_iou_bins_like_a_loop():
    rng = np.random.default_rng(0)
    iou, conf = rng.random((40, 7)), rng.random((40, 7))
    iou[0, :3] = [0.0, 1.0, 0.1]  # the edges: 0 in the first bin, 1 in the last, 0.1 in the second
    out = confidence_by_iou(iou, conf, bins=10)
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        mask = (iou >= lo) & ((iou < hi) if b < 9 else (iou <= hi))
        assert out["crops"][b] == mask.sum()
        assert out["mean_confidence"][b] == pytest.approx(conf[mask].mean())
    assert sum(out["crops"]) == iou.size


def test_plot_confidence_draws(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "conf.png"
    plot_confidence(rng.random((30, 10)), rng.random((30, 10)), path, title="t")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 10
