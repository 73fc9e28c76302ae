"""dali_relabel.metrics: top-k and ImageNet-ReaL accuracy against timm's evaluator and a brute-force reference."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from dali_relabel.metrics import (
    VAL_FILE_PATTERN,
    ReaLAccuracy,
    TopKAccuracy,
    load_real_labels,
    real_accuracy,
)


def synthetic_real(tmp_path, n=300, c=20, seed=0):
    """A real.json of n images: label sets of size 0-3 (about a tenth empty), and logits that are often right."""
    rng = np.random.default_rng(seed)
    sets = [sorted(rng.choice(c, size=int(rng.choice([0, 1, 1, 2, 3, 1, 1, 2, 1, 1])), replace=False).tolist())
            for _ in range(n)]
    path = tmp_path / "real.json"
    path.write_text(json.dumps(sets))
    logits = torch.from_numpy(rng.normal(size=(n, c)).astype(np.float32))
    for i, s in enumerate(sets):
        if s and rng.random() < 0.5:
            logits[i, s[0]] += 3.0  # a correct prediction for about half the images
    keys = [f"val/n{i % 7:08d}/{VAL_FILE_PATTERN.format(i + 1)}" for i in range(n)]
    return path, sets, logits, keys


def brute_force(logits, sets, k):
    top = np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :k]
    hits = [any(int(p) in s for p in row) for row, s in zip(top, sets) if s]
    return 100.0 * np.mean(hits), len(hits)


def test_real_accuracy_matches_timm_and_brute_force(tmp_path):
    from timm.data import RealLabelsImagenet

    path, sets, logits, keys = synthetic_real(tmp_path)
    metric = ReaLAccuracy(path, topk=(1, 5))
    for start in range(0, len(keys), 64):                       # batches, the last one partial
        metric.update(logits[start:start + 64], keys[start:start + 64])
    got = metric.compute()

    timm_eval = RealLabelsImagenet([os.path.basename(k) for k in keys], real_json=str(path), topk=(1, 5))
    for start in range(0, len(keys), 64):
        timm_eval.add_result(logits[start:start + 64])
    assert got["real_top1"] == pytest.approx(timm_eval.get_accuracy(1), abs=1e-9)
    assert got["real_top5"] == pytest.approx(timm_eval.get_accuracy(5), abs=1e-9)
    for k in (1, 5):
        expected, counted = brute_force(logits, sets, k)
        assert got[f"real_top{k}"] == pytest.approx(expected, abs=1e-9)
    assert got["real_images"] == counted and got["real_excluded"] == sum(not s for s in sets) > 0
    assert 0 < got["real_top1"] < 100


def test_empty_sets_are_excluded_not_counted_wrong():
    real = {VAL_FILE_PATTERN.format(1): (3,), VAL_FILE_PATTERN.format(2): (), VAL_FILE_PATTERN.format(3): (0, 1)}
    logits = torch.tensor([[0, 0, 0, 9.0], [9.0, 0, 0, 0], [0, 0, 9.0, 0]])
    out = real_accuracy(logits, [VAL_FILE_PATTERN.format(i) for i in (1, 2, 3)], real)
    assert out == {"real_top1": 50.0, "real_images": 2, "real_excluded": 1}


def test_topk_accuracy_with_padding():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    labels = torch.tensor([1, 2, 1, 2])
    acc = TopKAccuracy(topk=(1, 2))
    acc.update(logits, labels, valid=3)                           # the 4th row is a padding duplicate
    assert acc.compute() == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(200 / 3)}
    assert acc.state() == {"count": 3, "correct1": 1, "correct2": 2}


def test_valid_masks_count_each_image_once(tmp_path):
    """The loaders' [B] bool ``valid`` output (a repeated image anywhere in the batch is left out) gives the metrics
    of the valid rows alone, for top-k and ReaL alike."""
    path, sets, logits, keys = synthetic_real(tmp_path, n=40)
    labels = torch.tensor([s[0] if s else 0 for s in sets])
    valid = torch.ones(40, dtype=torch.bool)
    valid[[3, 17, 39]] = False
    real, acc = ReaLAccuracy(path, topk=(1, 5)), TopKAccuracy()
    real.update(logits, keys, valid=valid)
    acc.update(logits, labels, valid=valid)
    kept = [i for i in range(40) if valid[i]]
    assert real.compute() == real_accuracy(logits[kept], [keys[i] for i in kept], path, topk=(1, 5))
    alone = TopKAccuracy()
    alone.update(logits[kept], labels[kept])
    assert acc.state() == alone.state() and acc.count == 37
    with pytest.raises(ValueError, match=r"valid must be a \[40\] bool mask"):
        acc.update(logits, labels, valid=valid[:10])
    with pytest.raises(ValueError, match="with valid=, give all 40 keys"):
        real.update(logits, keys[:10], valid=valid)


def test_check_keys_fails_before_evaluating(tmp_path):
    path, *_ = synthetic_real(tmp_path, n=5)
    real = ReaLAccuracy(path)
    real.check_keys([f"n01/{VAL_FILE_PATTERN.format(i)}" for i in (1, 5)])
    real.check_keys(["n01/ILSVRC2012_val_00000003"])             # a webdataset __key__: no extension
    assert real.label_set("n01/ILSVRC2012_val_00000003") == real.label_set(VAL_FILE_PATTERN.format(3))
    with pytest.raises(KeyError, match=r"2 of 3 images have no ReaL labels \(e.g. n01/ILSVRC2012_val_00000006.JPEG, "
                                       r"train/cat.jpg\)"):
        real.check_keys([f"n01/{VAL_FILE_PATTERN.format(6)}", "train/cat.jpg", VAL_FILE_PATTERN.format(2)])


def test_errors_name_the_file_and_entry(tmp_path):
    bad = tmp_path / "real.json"
    bad.write_text(json.dumps([[1], [2, -1]]))
    with pytest.raises(ValueError, match=r"entry 1 \(ILSVRC2012_val_00000002.JPEG\) is \[2, -1\]"):
        load_real_labels(bad)
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="real.json: not JSON"):
        load_real_labels(bad)
    metric = ReaLAccuracy({VAL_FILE_PATTERN.format(1): (1,)})
    with pytest.raises(KeyError, match="no ReaL labels for 'cat.jpg'"):
        metric.update(torch.zeros(1, 3), ["train/cat.jpg"])
    with pytest.raises(ValueError, match="topk must hold positive integers"):
        TopKAccuracy(topk=(0,))


def test_from_timm_reads_the_shipped_labels():
    metric = ReaLAccuracy.from_timm()
    assert len(metric.real_labels) == 50_000
    # The ReaL paper: 46,837 images keep at least one label; the first validation image has none.
    assert sum(not s for s in metric.real_labels.values()) == 3163
    assert metric.label_set("ILSVRC2012_val_00000001.JPEG") == frozenset()
    assert metric.label_set("val/n01751748/ILSVRC2012_val_00000002.JPEG") == {795, 970}


def _ddp_worker(rank, world, port, path, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    metric = ReaLAccuracy(path)
    data = json.loads(open(out + ".in").read())
    logits = torch.tensor(data["logits"])[rank::world]
    metric.update(logits, data["keys"][rank::world])
    metric.all_reduce()
    if rank == 0:
        open(out, "w").write(json.dumps(metric.compute()))
    dist.destroy_process_group()


def test_all_reduce_sums_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    path, sets, logits, keys = synthetic_real(tmp_path, n=50)
    out = str(tmp_path / "out.json")
    open(out + ".in", "w").write(json.dumps({"logits": logits.tolist(), "keys": keys}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(path), out), nprocs=2, join=True)
    assert json.loads(open(out).read()) == real_accuracy(logits, keys, path)


def test_label_mask_gives_the_same_accuracy_as_keys(tmp_path):
    """label_mask(keys) holds each image's set (brute force), and update(label_mask=...) counts as update(keys)."""
    path, sets, logits, keys = synthetic_real(tmp_path, n=120)
    real = ReaLAccuracy(path, topk=(1, 5))
    mask = real.label_mask(keys, 20)
    assert mask.dtype == torch.bool and mask.shape == (120, 20)
    assert [sorted(torch.nonzero(row).flatten().tolist()) for row in mask] == sets
    valid = torch.rand(120, generator=torch.Generator().manual_seed(0)) > 0.1
    by_mask = ReaLAccuracy(path, topk=(1, 5))
    by_mask.update(logits, label_mask=mask, valid=valid)
    real.update(logits, keys, valid=valid)
    assert by_mask.compute() == real.compute() and real.count > 0
    with pytest.raises(ValueError, match=r"ILSVRC2012_val_00000001.JPEG.: ReaL class 12 is beyond the 10 classes"):
        real.label_mask(keys, 10)
    with pytest.raises(TypeError, match="give the images' keys or their label_mask"):
        real.update(logits, keys, label_mask=mask)
    with pytest.raises(ValueError, match=r"label_mask must be \[120, C\] bool"):
        real.update(logits, label_mask=mask.float())


@pytest.mark.filterwarnings("ignore:2 class folders hold no images")
def test_val_loader_yields_the_real_label_sets(tmp_path):
    """ReLabelValLoader(real_labels=...): the 'real' output is each image's set, in batch order with the keys;
    images without ReaL labels are refused at construction."""
    from example_util import imagenet_style_val

    from dali_relabel import ReLabelValLoader
    from dali_relabel.testing.demo_dataset import build_demo_dataset

    demo = build_demo_dataset(tmp_path / "demo", num_images=12, height=48, width=48, progress=False)
    truth = imagenet_style_val(demo, tmp_path / "imagenet")
    c = len(demo.class_names)
    sets = [sorted({t, (t + n) % c}) if n % 3 else [] for n, t in enumerate(truth)]
    real_json = tmp_path / "real.json"
    real_json.write_text(json.dumps(sets))
    loader = ReLabelValLoader(tmp_path / "imagenet" / "val", None, 5, device="cpu", num_threads=1, crop_size=32,
                              outputs=("keys", "real", "valid"), real_labels=str(real_json))
    seen = {}
    for keys, real, valid in loader:
        assert real.dtype == torch.bool and real.shape == (len(keys), c)
        for key, row in zip(keys, real):
            seen[os.path.basename(key)] = sorted(torch.nonzero(row).flatten().tolist())
    assert seen == {VAL_FILE_PATTERN.format(n + 1): s for n, s in enumerate(sets)}
    real_json.write_text(json.dumps(sets[:-1]))
    with pytest.raises(KeyError, match="1 of 12 images have no ReaL labels"):
        ReLabelValLoader(tmp_path / "imagenet" / "val", None, 5, device="cpu", outputs=("real",),
                         real_labels=str(real_json))
    with pytest.raises(ValueError, match="the 'real' output and real_labels= .* go together: give real_labels="):
        ReLabelValLoader(tmp_path / "imagenet" / "val", None, 5, device="cpu", outputs=("images", "real"))
