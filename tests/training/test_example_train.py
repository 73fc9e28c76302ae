"""examples/train_imagenet.py: the ReLabel switch is the marked lines only, and both variants train (CPU)."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import requires_gpu
from example_util import imagenet_style_val, load, other_variant

from dali_relabel.testing.demo_dataset import build_demo_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_imagenet.py"


def standard_variant(source: str) -> str:
    """The plain-PyTorch script: drop the lines marked `# ReLabel`, uncomment the `# standard:` lines."""
    return other_variant(source, prefix="standard")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 40 images: every class folder gets at least one (torchvision's ImageFolder rejects empty ones).
    demo = build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=40, height=150, width=200, progress=False)
    root = tmp_path_factory.mktemp("imagenet")
    (root / "train").symlink_to(demo.images, target_is_directory=True)
    (root / "val").symlink_to(demo.images, target_is_directory=True)
    return root, demo


def test_switching_to_relabel_changes_only_the_marked_lines():
    """Four marked lines (the import, --labels, the two loaders) and the two `# standard:` lines they replace."""
    source = SCRIPT.read_text()
    standard = standard_variant(source)
    diff = [d for d in difflib.ndiff(standard.splitlines(), source.splitlines()) if d[:2] in ("- ", "+ ")]
    assert len([line for line in source.splitlines() if line.rstrip().endswith("# ReLabel")]) == 4
    assert 1 <= len(diff) <= 8, diff
    assert "ReLabelLoader" not in standard and "ReLabelValLoader" not in standard
    assert "add_argument(\"--labels\"" not in standard


def run(module, monkeypatch, argv):
    """Runs the script's main, recording the targets each training step receives."""
    seen = []
    step = module.train_step

    def recording_step(model, images, targets, *args, **kwargs):
        seen.append(targets.detach().clone())
        return step(model, images, targets, *args, **kwargs)

    monkeypatch.setattr(module, "train_step", recording_step)
    return module.main(argv), seen


def args(root, *extra):
    return [str(root), "--arch", "resnet18", "--epochs", "1", "-b", "4", "-j", "2", "--max-iters", "2",
            "--val-iters", "1", "--print-freq", "1", *extra]


def test_relabel_variant_trains_on_soft_targets(data, monkeypatch, capsys):
    root, demo = data
    module = load(SCRIPT, "train_imagenet_relabel")
    result, seen = run(module, monkeypatch, args(root, "--labels", str(demo.labels)))
    assert result["iterations"] == 2 and math.isfinite(result["train_loss"]) and 0 <= result["val_top1"] <= 100
    assert len(seen) == 2
    for targets in seen:  # ReLabel: [B, C] probabilities, multi-label (not one-hot)
        assert targets.shape == (4, len(demo.class_names)) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        assert (targets.max(1).values < 0.999).all()
    out = capsys.readouterr().out
    assert "epoch 0 iter 1: loss" in out and re.search(r"epoch 0: train loss [\d.]+, val top-1 [\d.]+%", out)


def test_standard_variant_trains_on_hard_labels(data, monkeypatch, tmp_path):
    root, demo = data
    path = tmp_path / "train_imagenet_standard.py"
    path.write_text(standard_variant(SCRIPT.read_text()))
    module = load(path, "train_imagenet_standard")
    assert not hasattr(module, "ReLabelLoader")
    with pytest.raises(SystemExit):  # the ReLabel option is gone with its line
        module.parse_args([str(root), "--labels", str(demo.labels)])
    # -j 0: torchvision's DataLoader workers are forked, and this pytest process already runs DALI's (and torch's)
    # threads from earlier tests; a fork of a multi-threaded process may crash the child (CI saw a worker die of
    # SIGSEGV once). The script run as users run it forks from a fresh process; what is tested here is its path.
    result, seen = run(module, monkeypatch, args(root, "-j", "0"))
    assert result["iterations"] == 2 and math.isfinite(result["train_loss"])
    for targets in seen:  # torchvision ImageFolder: [B] class indices
        assert targets.shape == (4,) and targets.dtype == torch.int64
        assert ((targets >= 0) & (targets < len(demo.class_names))).all()


@requires_gpu
def test_relabel_variant_on_the_gpu(data, monkeypatch):
    """On a GPU the script decodes and pools in DALI on the device and steps with AMP + channels_last."""
    root, demo = data
    module = load(SCRIPT, "train_imagenet_relabel_gpu")
    result, seen = run(module, monkeypatch, args(root, "--labels", str(demo.labels)))
    assert result["iterations"] == 2 and math.isfinite(result["train_loss"])
    for targets in seen:
        assert targets.device.type == "cuda" and targets.shape == (4, len(demo.class_names))
        torch.testing.assert_close(targets.sum(1), torch.ones(4, device="cuda"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")   # (training is stubbed out)
def test_relabel_variant_reports_real_next_to_top1(data, monkeypatch, capsys, tmp_path):
    """--real-json: with each image's ReaL set = {its folder class}, ReaL top-1 is the plain top-1 exactly (the same
    predictions, counted the same way); the images with an empty set are left out (the ReaL convention)."""
    import json

    root, demo = data
    val_root = tmp_path / "imagenet"
    truth = imagenet_style_val(demo, val_root)
    (val_root / "train").symlink_to(demo.images, target_is_directory=True)
    real_json = tmp_path / "real.json"
    real_json.write_text(json.dumps([[c] for c in truth]))
    module = load(SCRIPT, "train_imagenet_real")
    monkeypatch.setattr(module, "train_step", lambda *a, **k: torch.tensor(1.0))
    argv = [str(val_root), "--labels", str(demo.labels), "--arch", "mobilenet_v3_small", "--epochs", "1", "-b", "8",
            "-j", "2",
            "--max-iters", "1", "--real-json", str(real_json)]
    result = module.main(argv)
    assert result["val_real"]["real_images"] == len(truth) == 40
    assert result["val_real"]["real_top1"] == pytest.approx(result["val_top1"])
    assert re.search(r"val top-1 [\d.]+%, ReaL top-1 [\d.]+% \(40 images\)", capsys.readouterr().out)
    real_json.write_text(json.dumps([list(range(len(demo.class_names))) if n % 2 else [] for n in range(40)]))
    result = module.main(argv)
    assert result["val_real"] == {"real_top1": 100.0, "real_images": 20, "real_excluded": 20}
    real_json.write_text(json.dumps([[0]] * 39))     # one image short: refused before training
    with pytest.raises(KeyError, match=r"1 of 40 images have no ReaL labels"):
        module.main(argv)
