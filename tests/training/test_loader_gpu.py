"""ReLabelLoader and the demo on the GPU (mixed decoding, GPU label ops); skipped without CUDA."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from conftest import requires_gpu
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.loader import ReLabelLoader
from dali_relabel.testing.demo_dataset import build_demo_dataset

pytestmark = requires_gpu


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=40, height=150, width=200, progress=False)


@pytest.mark.parametrize("bank_memory", ["device", "host"])
def test_gpu_epoch_targets_match_reference(demo, bank_memory):
    store = LabelStore.open(str(demo.labels))
    ld = ReLabelLoader(demo.images, demo.labels, 16, device="gpu", crop_size=64, seed=1, bank_memory=bank_memory,
                       outputs=("images", "targets", "labels", "boxes", "rows", "keys"))
    seen = Counter()
    for images, targets, labels, boxes, rows, keys in ld:
        assert images.is_cuda and targets.is_cuda and images.shape[1:] == (3, 64, 64)
        for i, key in enumerate(keys):
            seen[key] += 1
            row = int(rows[i])
            box = boxes[i].cpu().numpy()
            ref = slow_label_pool(*store.read(row), box[:2], box[2:], store.num_classes)
            np.testing.assert_allclose(targets[i].cpu().numpy(), ref, rtol=1e-5, atol=1e-6)
            assert int(labels[i]) == store.labels[row]
    assert sorted(seen) == sorted(demo.objects) and set(seen.values()) == {1}


def test_gpu_targets_train_with_cross_entropy(demo):
    images, targets = next(iter(ReLabelLoader(demo.images, demo.labels, 8, device="gpu", crop_size=32)))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, targets.shape[1], 32), torch.nn.Flatten()).cuda()
    loss = torch.nn.CrossEntropyLoss()(model(images), targets)
    loss.backward()
    assert torch.isfinite(loss)


def test_gpu_demo_runs(tmp_path, capsys):
    assert main(["demo", "--device", "gpu", "--num-images", "40", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "demo.png")]) == 0
    assert "img/s on gpu" in capsys.readouterr().out
