"""dali-relabel crop-stats draws the confidence of supervision (numbers against the library's statistics, recomputed);
dali-relabel show has a colour bar for its heatmaps."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.cli.show import HEATMAP_LABEL, show_figure
from dali_relabel.crop_stats import confidence_by_iou, crop_confidence, crop_iou_stats, load_boxes
from dali_relabel.label_view import LabelView
from dali_relabel.testing.demo_dataset import build_demo_dataset


def drawn(path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    return img


def test_crop_stats_draws_the_confidence_of_supervision_on_the_demo(tmp_path, capsys):
    js, png = tmp_path / "s.json", tmp_path / "conf.png"
    assert main(["crop-stats", "--num-images", "6", "--data-dir", str(tmp_path / "data"), "--crops", "40", "--seed",
                 "2", "-o", str(tmp_path / "iou.png"), "--confidence-out", str(png), "--bins", "5", "--json", str(js),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    drawn(png)
    got = json.loads(js.read_text())["confidence"]
    demo = build_demo_dataset(tmp_path / "data", num_images=6, progress=False)
    stats = crop_iou_stats(demo.images, demo.labelled_boxes(), crops=40, seed=2, progress=False)
    conf = crop_confidence(stats, LabelStore.open(str(demo.labels)))
    curve = confidence_by_iou(stats.iou, conf, bins=5)
    assert got["iou_bin_edges"] == curve["iou_bin_edges"] and got["crops"] == curve["crops"]
    assert sum(got["crops"]) == 6 * 40
    for a, b in zip(got["mean_confidence"], curve["mean_confidence"]):
        assert (a is None and np.isnan(b)) or a == pytest.approx(b)
    below, above = conf[stats.iou < 0.5].mean(), conf[stats.iou >= 0.5].mean()
    assert got["mean_confidence_iou_below_0.5"] == pytest.approx(below)
    assert f"{below:.3f} for crops with IoU < 0.5, {above:.3f} for IoU >= 0.5" in text
    assert above > below     # the paper's point: crops that miss the object get less confident targets


def test_crop_stats_with_the_users_boxes_and_store(tmp_path, capsys):
    demo = build_demo_dataset(tmp_path / "data", num_images=6, height=120, width=160, progress=False)
    keys = sorted(demo.objects)[:3]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({k: [o["box"] for o in demo.objects[k]] for k in keys}))
    js = tmp_path / "s.json"
    args = ["crop-stats", "--images", str(demo.images), "--boxes", str(boxes), "--crops", "20", "-o",
            str(tmp_path / "h.png"), "--quiet"]
    assert main([*args, "--labels", str(demo.labels), "--temperature", "2", "--json", str(js), "--confidence-out",
                 str(tmp_path / "c.png")]) == 0
    got = json.loads(js.read_text())["confidence"]
    stats = crop_iou_stats(demo.images, load_boxes(boxes), crops=20, progress=False)
    conf = crop_confidence(stats, LabelStore.open(str(demo.labels)), temperature=2.0)
    assert got["temperature"] == 2.0 and got["mean_confidence_all"] == pytest.approx(conf.mean())
    drawn(tmp_path / "c.png")
    capsys.readouterr()
    assert main([*args, "--confidence-out", str(tmp_path / "none.png")]) == 0      # no store: no confidence figure
    assert not (tmp_path / "none.png").exists()
    assert main(["crop-stats", "--labels", str(demo.labels), "--quiet"]) == 2
    assert "--labels goes with --images and --boxes" in capsys.readouterr().err
    # An image the store has no map of is named.
    shutil.copytree(demo.images, tmp_path / "imgs")
    shutil.copy(demo.images / keys[0], tmp_path / "imgs" / "extra.jpg")
    boxes.write_text(json.dumps({"extra.jpg": [[0, 0, 1, 1]]}))
    assert main(["crop-stats", "--images", str(tmp_path / "imgs"), "--boxes", str(boxes), "--crops", "5", "-o",
                 str(tmp_path / "h.png"), "--labels", str(demo.labels), "--quiet"]) == 2
    assert re.search(r"key\(s\) not in label store .*extra\.jpg", capsys.readouterr().err)


def test_show_has_a_colour_bar_for_the_heatmaps():
    rng = np.random.default_rng(0)
    image = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    heat = rng.random((3, 30, 40))
    view = LabelView(key="k.jpg", path=Path("k.jpg"), image=image, names=["a", "b", "c"], ranked=np.array([2, 0, 1]),
                     whole=np.array([0.2, 0.3, 0.5]), heat=heat, box=(0.1, 0.1, 0.9, 0.9),
                     target=np.array([0.1, 0.2, 0.7]))
    fig = show_figure(view)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == HEATMAP_LABEL
    assert bars[0].get_ylim() == (0.0, 1.0)
