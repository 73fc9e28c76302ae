"""dali-relabel demo: the main job runs end to end on the built-in dataset and its targets are right."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from dali_relabel import LabelStore
from dali_relabel.cli import main
from dali_relabel.testing.demo_dataset import build_demo_dataset, coverage_maps, crop_composition, owner_map


def test_demo_runs_one_epoch_and_draws(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--device", "cpu", "--num-images", "40", "--batch-size", "8", "--data-dir",
                 str(tmp_path / "data"), "--out", str(out), "--show", "4"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"40 images in [\d.]+ s: \d+ img/s on cpu", text)
    assert text.count("target:") == 4 and text.count("crop contains:") == 4
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 300 and img.shape[1] > 300 and img.std() > 10  # drawn, not blank


def test_demo_maps_are_the_true_layout(tmp_path):
    """The store holds alpha * coverage, so the pooled logits of a crop ≈ alpha * its composition."""
    demo = build_demo_dataset(tmp_path, num_images=6, height=120, width=160, progress=False)
    store = LabelStore.open(str(demo.labels))
    assert store.is_complete and list(store.keys) == sorted(demo.objects)
    for row, key in enumerate(store.keys):
        objects = demo.objects[key]
        owner = owner_map(objects, demo.height, demo.width)
        scores, classes = store.read(row)
        cov = coverage_maps(owner, len(objects), store.height, store.width)
        for i, obj in enumerate(objects):  # every object's coverage is stored in its cells
            stored = np.where(classes == obj["class"], scores.astype(np.float64), 0).sum(-1)
            np.testing.assert_allclose(stored, demo.alpha * cov[i], atol=0.01)
        # The folder label is the largest visible object.
        visible = [(owner == i).sum() for i in range(len(objects))]
        assert key.split("/")[0] == demo.class_names[objects[int(np.argmax(visible))]["class"]]
        full = crop_composition(owner, (0, 0, 1, 1), len(objects))
        np.testing.assert_allclose(full, np.array(visible) / owner.size)


def test_printed_and_drawn_classes_break_ties_the_same_way():
    from dali_relabel.cli.demo import top_classes

    target = np.array([0.1, 0.3, 0.3, 0.05, 0.3, 0.0], np.float32)
    assert top_classes(target, 3) == [1, 2, 4]        # equal probabilities: lower class index first
    assert top_classes(target, 6) == [1, 2, 4, 0, 3, 5]
    assert top_classes(np.full(4, 0.25, np.float32), 2) == [0, 1]
