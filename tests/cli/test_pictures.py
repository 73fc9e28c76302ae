"""dali-relabel show and crop-stats: files written and non-trivial, numbers against independent computations."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.label_view import cell_probabilities
from dali_relabel.crop_stats import box_iou, crop_iou_stats, load_boxes
from dali_relabel.testing.demo_dataset import build_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=6, height=120, width=160, progress=False)


def picture(path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # drawn, not blank
    return img


# --- show ------------------------------------------------------------------------------------------

def test_show_draws_heatmaps_and_the_box_target(demo, tmp_path, capsys):
    store = LabelStore.open(str(demo.labels))
    key = str(store.keys[2])
    box = [0.1, 0.25, 0.8, 0.9]
    out = tmp_path / "show.png"
    assert main(["show", str(demo.labels), "--images", str(demo.images), "--key", key, "--box", *map(str, box),
                 "--top", "3", "--temperature", "2", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    with_box = picture(out)
    assert with_box.shape[1] > 4 * with_box.shape[0]  # image, 3 heatmaps, bars
    # The printed target is the box's soft target (slow reference), top classes by name.
    ref = slow_label_pool(*store.read(store.row_of(key)), box[:2], box[2:], store.num_classes, temperature=2.0)
    printed = re.search(r"box target: (.*)", text).group(1).split(", ")
    for item, c in zip(printed, np.argsort(-ref)[:3]):
        name, value = item.rsplit(" ", 1)
        assert name == demo.class_names[c] and float(value) == pytest.approx(ref[c], abs=0.006)
    plain = tmp_path / "plain.png"
    assert main(["show", str(demo.labels), "--images", str(demo.images), "--key", key, "--top", "2",
                 "-o", str(plain)]) == 0
    assert picture(plain).shape[1] < with_box.shape[1]


@pytest.mark.parametrize("args,message", [
    (["--key", "nope/x.jpg"], r"nope/x\.jpg"),
    (["--key", "KEY", "--box", "0.5", "0.1", "0.4", "0.9"], r"--box 0.5 0.1 0.4 0.9: must satisfy 0 <= y0 < y1 <= 1"),
    # A key is never resolved outside --images (issue #14), whether or not the store holds it.
    (["--key", "../secret.jpg"], r"^dali-relabel show: error: key '\.\./secret\.jpg' has an empty, '\.' or '\.\.' "
                                 r"component; keys are plain relative paths inside the dataset root\n$"),
    (["--key", "/etc/passwd"], r"key '/etc/passwd' is an absolute path"),
])
def test_show_rejects_bad_input(demo, tmp_path, capsys, args, message):
    key = sorted(demo.objects)[0]
    args = [a.replace("KEY", key) for a in args]
    assert main(["show", str(demo.labels), "--images", str(demo.images), *args, "-o", str(tmp_path / "x.png")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()


def test_cell_probabilities_are_per_cell_softmaxes():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 4, 2)).astype(np.float16)
    classes = np.stack([rng.choice(6, 2, replace=False) for _ in range(12)]).reshape(3, 4, 2).astype(np.int16)
    probs = cell_probabilities(scores, classes, 6)
    for r in range(3):
        for c in range(4):
            logits = np.zeros(6)
            logits[classes[r, c]] = scores[r, c]
            np.testing.assert_allclose(probs[:, r, c], np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)


# --- crop-stats ------------------------------------------------------------------------------------

def independent_ious(images_dir, stats, boxes):
    """Pixel boxes and torchvision's box_iou: a second route to the same IoUs."""
    out = []
    for key, windows in zip(stats.keys, stats.crops):
        w, h = Image.open(images_dir / key).size
        scale = torch.tensor([w, h, w, h], dtype=torch.float64)
        to_xyxy = lambda b: torch.as_tensor(np.asarray(b, np.float64)[:, [1, 0, 3, 2]]) * scale  # noqa: E731
        out.append(torchvision.ops.box_iou(to_xyxy(windows), to_xyxy(boxes[key])).max(1).values.numpy())
    return np.stack(out)


def test_crop_stats_on_the_demo(tmp_path, capsys):
    out, js = tmp_path / "iou.png", tmp_path / "iou.json"
    assert main(["crop-stats", "--num-images", "6", "--data-dir", str(tmp_path / "data"), "--crops", "60",
                 "--seed", "3", "-o", str(out), "--json", str(js), "--quiet"]) == 0
    demo = build_demo_dataset(tmp_path / "data", num_images=6, progress=False)  # the one the command built
    text = capsys.readouterr().out
    img = picture(out)
    assert img.shape[0] >= 300 and img.shape[1] >= 500
    summary = json.loads(js.read_text())
    assert summary["images"] == 6 and summary["crops_per_image"] == 60
    assert f"IoU < 0.5: {summary['fraction_iou_below_0.5']:.1%}" in text

    boxes = demo.labelled_boxes()
    for key, b in boxes.items():  # the labelled object: the folder's class
        label = demo.class_names.index(key.split("/")[0])
        assert b.tolist() == [o["box"] for o in demo.objects[key] if o["class"] == label] and len(b) >= 1
    stats = crop_iou_stats(demo.images, boxes, crops=60, seed=3, progress=False)
    ious = independent_ious(demo.images, stats, boxes)
    np.testing.assert_allclose(stats.iou, ious, atol=1e-9)
    assert summary["fraction_iou_below_0.5"] == pytest.approx((ious < 0.5).mean())
    assert summary["fraction_iou_zero"] == pytest.approx((ious == 0).mean())
    assert 0 < summary["fraction_iou_below_0.5"] < 1

    # The windows are random-resized crops: area 8-100% of the image, aspect 3/4-4/3 (pixel rounding aside).
    for key, windows in zip(stats.keys, stats.crops):
        w, h = Image.open(demo.images / key).size
        ph, pw = (windows[:, 2] - windows[:, 0]) * h, (windows[:, 3] - windows[:, 1]) * w
        area, aspect = ph * pw / (h * w), pw / ph
        assert (area >= 0.08 - 0.02).all() and (area <= 1).all()
        assert (aspect >= 0.75 * 0.95).all() and (aspect <= 4 / 3 * 1.05).all()
        assert len(np.unique(windows, axis=0)) > 50  # independent draws per crop


def test_crop_stats_with_a_boxes_file(demo, tmp_path, capsys):
    keys = sorted(demo.objects)[:3]
    boxes = {k: [{"box": o["box"], "class": o["class"]} for o in demo.objects[k]] for k in keys}  # every object
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    js = tmp_path / "s.json"
    assert main(["crop-stats", "--images", str(demo.images), "--boxes", str(path), "--crops", "40", "-o",
                 str(tmp_path / "h.png"), "--json", str(js), "--quiet"]) == 0
    picture(tmp_path / "h.png")
    loaded = load_boxes(path, demo.images)
    assert sorted(loaded) == keys and all(len(loaded[k]) == len(demo.objects[k]) for k in keys)
    stats = crop_iou_stats(demo.images, loaded, crops=40, progress=False)
    ious = independent_ious(demo.images, stats, loaded)
    assert json.loads(js.read_text())["fraction_iou_below_0.5"] == pytest.approx((ious < 0.5).mean())


def test_crop_stats_rejects_bad_boxes(demo, tmp_path, capsys):
    key = sorted(demo.objects)[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({key: [[0.5, 0.1, 0.4, 0.9]]}))
    assert main(["crop-stats", "--images", str(demo.images), "--boxes", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert re.search(rf"{re.escape(key)}: box \[0.5, 0.1, 0.4, 0.9\] is not a normalized \(y0, x0, y1, x1\) box",
                     capsys.readouterr().err)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"nowhere/x.jpg": [[0, 0, 1, 1]]}))
    assert main(["crop-stats", "--images", str(demo.images), "--boxes", str(missing)]) == 2
    assert "1 keys of" in capsys.readouterr().err
    assert main(["crop-stats", "--images", str(demo.images)]) == 2
    assert "--images needs --boxes" in capsys.readouterr().err


def test_box_iou_edge_cases():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array([[0.5, 0.0, 1.0, 0.5], [0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    np.testing.assert_allclose(box_iou(a, b), [[0.0, 1.0, 0.0625 / (0.25 + 0.25 - 0.0625)]])
    assert box_iou(a, b)[0, 0] == 0  # touching: exactly zero
