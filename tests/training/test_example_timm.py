"""examples/train_timm.py: timm's conventions with the data lines swapped (the marked lines only); the ReLabel
variant trains a tiny timm model on ReLabel targets (RandAugment, erasing, Mixup/CutMix, SoftTargetCrossEntropy)
and reports top-1 and ReaL; timm's own variant (the marked lines swapped back) trains too. CPU."""

from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import Path

import pytest
import torch
from example_util import imagenet_style_val, load, other_variant

from dali_relabel.testing.demo_dataset import build_demo_dataset

pytest.importorskip("timm")
SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_timm.py"
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train/: 40 demo images (every class folder has some), val/: the same named like ImageNet's, real.json."""
    demo = build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=40, height=150, width=200, progress=False)
    root = tmp_path_factory.mktemp("imagenet")
    truth = imagenet_style_val(demo, root)
    (root / "train").symlink_to(demo.images, target_is_directory=True)
    real = root / "real.json"
    real.write_text(json.dumps([[c] for c in truth]))
    return root, demo, real


def timm_variant(source: str) -> str:
    return other_variant(source, prefix="timm")


def test_switching_from_timm_changes_only_the_marked_lines():
    source = SCRIPT.read_text()
    marked = [line for line in source.splitlines() if line.rstrip().endswith("# ReLabel")]
    assert len(marked) == 5      # the import, --labels, the two loaders, the loss
    diff = [d for d in difflib.ndiff(timm_variant(source).splitlines(), source.splitlines()) if d[:2] in ("- ", "+ ")]
    assert len(diff) <= 13, diff      # per swapped line: timm's line, its comment, the marked line; + --labels
    assert "from dali_relabel.timm import" not in timm_variant(source)


def run(module, monkeypatch, argv):
    """The script's main, recording what the loss receives."""
    seen = []
    loss_class = module.SoftTargetCrossEntropy

    class Recording(loss_class):
        def forward(self, x, target):
            seen.append(target.detach().clone())
            return super().forward(x, target)

    monkeypatch.setattr(module, "SoftTargetCrossEntropy", Recording)
    return module.main(argv), seen


def args(root, *extra):
    return [str(root), "--model", "test_resnet", "--epochs", "1", "-b", "4", "-j", "2", "--max-iters", "2",
            "--print-freq", "1", "--lr", "1e-3", *extra]


def test_relabel_variant_trains_a_timm_model(data, monkeypatch, capsys):
    root, demo, real = data
    module = load(SCRIPT, "train_timm_relabel")
    result, seen = run(module, monkeypatch, args(root, "--labels", str(demo.labels), "--real-json", str(real)))
    assert result["iterations"] == 2 and math.isfinite(result["train_loss"])
    assert len(seen) == 2
    classes = len(demo.class_names)
    for targets in seen:   # ReLabel targets, mixed and smoothed: [B, C] distributions, nowhere one-hot
        assert targets.shape == (4, classes) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        assert (targets.min(1).values >= 0.1 / classes - 1e-6).all() and (targets.max(1).values < 0.95).all()
    # every val image has the ReaL set {its class}: ReaL top-1 is the plain top-1, over all 40 images
    assert result["real_images"] == 40 and result["real_top1"] == pytest.approx(result["top1"])
    out = capsys.readouterr().out
    assert re.search(r"epoch 0: train loss [\d.]+, val top-1 [\d.]+%, top-5 [\d.]+%, ReaL top-1 [\d.]+%", out)


def test_timm_variant_trains_too(data, monkeypatch, tmp_path):
    """The marked lines swapped back: timm's create_dataset/create_loader/Mixup on the same folders."""
    root, demo, _ = data
    path = tmp_path / "train_timm_plain.py"
    path.write_text(timm_variant(SCRIPT.read_text()))
    module = load(path, "train_timm_plain")
    assert module.create_loader.__module__.startswith("timm.") and module.Mixup.__module__.startswith("timm.")
    result, seen = run(module, monkeypatch, args(root, "--workers", "0", "--val-iters", "2"))
    assert result["iterations"] == 2 and math.isfinite(result["train_loss"])
    for targets in seen:   # timm's Mixup of hard labels: [B, C]
        assert targets.shape == (4, len(demo.class_names))
