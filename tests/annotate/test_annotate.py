"""The machine annotator end to end (dali_relabel.annotate.runner, `dali-relabel annotate`): store contents against an
independent reference, kill-and-resume, several ranks, refusal to resume with other arguments, CLI errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from annotate_models import SLEEP_ENV
from conftest import requires_gpu
from dali_relabel.pipelines.annotate import annotate_pipeline
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dali_relabel import LabelStore
from dali_relabel.annotate.models import load_model
from dali_relabel.annotate.runner import AnnotateError, _batches_by_block, annotate, list_image_tree
from dali_relabel.cli import main as cli_main

TESTS = Path(__file__).resolve().parent.parent  # tests/: the shared helper modules
MODEL = "annotate_models:slow_resnet18"   # resnet18; sleeps only where the environment asks (the killed run)
ARGS = dict(model=MODEL, random_init=True, size=64, topk=5, batch_size=3, block_size=4, device="cpu")
# 15 images, blocks of 4 -> 4 blocks (the last short); batches of 3 -> every block padded.
CLI_ARGS = ["--model", MODEL, "--random-init", "--size", "64", "--topk", "5", "--batch-size", "3",
            "--block-size", "4", "--device", "cpu", "--no-progress"]


# One torch thread here and in the subprocesses (subprocess_env): the same arithmetic everywhere.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_image(path: Path, rng: np.random.Generator) -> None:
    h, w = rng.integers(40, 140, 2)
    coarse = (rng.random((h // 10 + 2, w // 10 + 2, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(coarse).resize((int(w), int(h)), Image.BILINEAR).save(path)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    """Two class folders (one with a subfolder) of JPEG/PNG/BMP images of varied sizes, and a non-image file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    names = [f"ant/a{i}.jpg" for i in range(6)] + [f"bee/b{i}.JPEG" for i in range(6)] + \
        ["bee/more/b9.png", "bee/more/b8.jpeg", "ant/zz.bmp"]
    for name in names:
        write_image(root / name, rng)
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def reference(image_tree, tmp_path_factory) -> LabelStore:
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("ref") / "store"
    report = annotate(images=str(image_tree), out=str(out), progress=False, **ARGS)
    assert report.complete and report.images == 15 and report.blocks == 4 and report.skipped_blocks == 0
    return LabelStore.open(out)


def assert_identical(store: LabelStore, ref: LabelStore) -> None:
    assert store.is_complete
    np.testing.assert_array_equal(store.keys, ref.keys)
    np.testing.assert_array_equal(store.labels, ref.labels)
    assert store.annotator == ref.annotator
    for got, want in zip(store.read(slice(None)), ref.read(slice(None))):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert store.content_hash() == ref.content_hash()


def test_image_listing_follows_image_folder(image_tree, tmp_path):
    listing = list_image_tree(image_tree)
    assert listing.classes == ["ant", "bee"]
    assert listing.keys == [f"ant/a{i}.jpg" for i in range(6)] + ["ant/zz.bmp"] + \
        [f"bee/b{i}.JPEG" for i in range(6)] + ["bee/more/b8.jpeg", "bee/more/b9.png"]
    assert listing.labels == [0] * 7 + [1] * 8
    rng = np.random.default_rng(1)
    for name in ("y.png", "x.jpg"):   # a flat folder: its images, unlabelled
        write_image(tmp_path / "flat" / name, rng)
    flat = list_image_tree(tmp_path / "flat")
    assert flat.keys == ["x.jpg", "y.png"] and flat.labels == [-1, -1]
    (tmp_path / "list.txt").write_text("flat/y.png 3\nflat/x.jpg\n")   # an image list, as the loader reads it
    listed = list_image_tree(tmp_path / "list.txt")
    assert listed.keys == ["flat/y.png", "flat/x.jpg"] and listed.labels == [3, -1] and listed.root == tmp_path


def dense_reference(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """[h, w, C] float64 logits: the model's own pre-pooling features (hooked) times fc, at every location."""
    seen = []
    hook = model.avgpool.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    f = seen[0][0].double().cpu().numpy()                                 # [512, h, w]
    w, b = model.fc.weight.detach().double().cpu().numpy(), model.fc.bias.detach().double().cpu().numpy()
    return np.einsum("chw,kc->hwk", f, w) + b


def assert_topk_of_dense_map(store: LabelStore, image_tree: Path, device: str, atol: float = 5e-3) -> None:
    """Every row holds the sorted top-k of the original model's dense map of that image, computed alone."""
    listing = list_image_tree(image_tree)
    loaded = load_model(MODEL, random_init=True)
    model = loaded.module.to(device)
    scores, classes = store.read(slice(None))
    assert scores.dtype == np.float16 and classes.dtype == np.int16
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores.astype(np.float32), axis=-1) <= 0)
    assert np.all(np.sort(classes, axis=-1)[..., 1:] != np.sort(classes, axis=-1)[..., :-1])
    # Reference: each image alone through the same input pipeline, then the original model.
    pipe = annotate_pipeline(file_root=str(image_tree), files=listing.keys, positions=range(15), size=64,
                             mean=loaded.mean, std=loaded.std, decoder="mixed" if device == "cuda" else "cpu",
                             batch_size=1, num_threads=1, device_id=0 if device == "cuda" else None)
    pipe.build()
    for row in range(15):
        out = pipe.run()[0]
        x = torch.from_numpy(np.array((out.as_cpu() if device == "cuda" else out).as_tensor()))
        ref = dense_reference(model, x.to(device))                       # [2, 2, 1000]
        top = -np.sort(-ref, axis=-1)[..., :5]
        np.testing.assert_allclose(scores[row], top, atol=atol, rtol=2e-3, err_msg=listing.keys[row])
        # Classes checked through their logits (robust to near-ties swapping places).
        picked = np.take_along_axis(ref, classes[row].astype(np.int64), axis=-1)
        np.testing.assert_allclose(picked, top, atol=atol, rtol=2e-3, err_msg=listing.keys[row])


def test_store_holds_topk_of_the_dense_map(reference, image_tree):
    listing = list_image_tree(image_tree)
    s = reference
    assert (s.num_samples, s.height, s.width, s.k, s.num_classes, s.block_size) == (15, 2, 2, 5, 1000, 4)
    np.testing.assert_array_equal(s.keys, listing.keys)
    np.testing.assert_array_equal(s.labels, listing.labels)
    loaded = load_model(MODEL, random_init=True)
    a = s.annotator
    assert (a["model"], a["random_init"], a["weights"], a["weights_sha256"]) == \
        (MODEL, True, None, loaded.weights_sha256)
    assert (a["size"], a["resize"], a["k"], a["batch_size"], a["device"], a["amp"]) == \
        (64, "squash", 5, 3, "cpu", False)
    assert a["mean"] == list(loaded.mean) and a["std"] == list(loaded.std)
    assert_topk_of_dense_map(s, image_tree, "cpu")
    assert cli_main(["verify", s.url, "--images", str(image_tree), "--quiet"]) == 0


def test_float32_scores_keep_the_logits(reference, image_tree, tmp_path):
    """scores_dtype="float32": the same top-k, with the logits kept in float32 (float16 stores round them)."""
    annotate(images=str(image_tree), out=str(tmp_path / "f32"), progress=False, scores_dtype="float32", **ARGS)
    store = LabelStore.open(tmp_path / "f32")
    assert store.scores_dtype == "float32" and store.is_complete
    s32, c32 = store.read(slice(None))
    s16, c16 = reference.read(slice(None))
    assert s32.dtype == np.float32
    np.testing.assert_array_equal(c32, c16)
    np.testing.assert_array_equal(s32.astype(np.float16), s16)
    assert (s32 != s16.astype(np.float32)).mean() > 0.5


@requires_gpu
def test_gpu_annotation_is_the_topk_of_the_dense_map_and_reproducible(image_tree, tmp_path):
    args = {**ARGS, "device": "cuda"}
    first = annotate(images=str(image_tree), out=str(tmp_path / "a"), progress=False, **args)
    second = annotate(images=str(image_tree), out=str(tmp_path / "b"), progress=False, **args)
    assert first.complete and second.complete
    a, b = LabelStore.open(tmp_path / "a"), LabelStore.open(tmp_path / "b")
    assert a.annotator["device"] == "cuda"
    assert_identical(b, a)   # what a resumed or multi-rank run relies on
    # nvJPEG + GPU resize, TF32 convolutions: compared with a looser tolerance than on the CPU.
    assert_topk_of_dense_map(a, image_tree, "cuda", atol=3e-2)
    amp = annotate(images=str(image_tree), out=str(tmp_path / "amp"), progress=False, **{**args, "amp": True})
    assert amp.complete
    assert cli_main(["verify", str(tmp_path / "amp"), "--images", str(image_tree), "--quiet"]) == 0


def test_undecodable_image_is_named_and_the_run_resumes_once_replaced(image_tree, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(image_tree, root)
    (root / "bee" / "b2.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = str(tmp_path / "store")
    with pytest.raises(AnnotateError, match=r"DALI cannot decode 1 image\(s\) of .*: bee/b2\.JPEG: cannot be decoded"):
        annotate(images=str(root), out=out, progress=False, **ARGS)
    shutil.copy(image_tree / "bee" / "b2.JPEG", root / "bee" / "b2.JPEG")
    report = annotate(images=str(root), out=out, progress=False, **ARGS)
    assert report.complete


def test_memory_url_store_is_identical(reference, image_tree):
    url = f"memory://annotate-test-{os.getpid()}"
    annotate(images=str(image_tree), out=url, progress=False, **ARGS)
    assert_identical(LabelStore.open(url), reference)


def cli_command(image_tree: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dali_relabel.cli", "annotate", "--images", str(image_tree), "--out", str(out),
            *CLI_ARGS]


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def completed(out: Path) -> np.ndarray | None:
    try:
        return LabelStore.open(out).completed_blocks()
    except (FileNotFoundError, ValueError):
        return None


def test_killed_run_resumes_to_an_identical_store(reference, image_tree, tmp_path):
    out = tmp_path / "store"
    proc = subprocess.Popen(cli_command(image_tree, out), env=subprocess_env(**{SLEEP_ENV: "0.4"}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while True:   # kill as soon as some, but not all, blocks are written
            done = completed(out)
            if done is not None and 0 < done.sum() < len(done):
                break
            assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    partial = LabelStore.open(out)
    done_before = int(partial.completed_blocks().sum())
    assert 0 < done_before < 4 and not partial.is_complete

    report = annotate(images=str(image_tree), out=str(out), progress=False, **ARGS)
    assert report.skipped_blocks >= done_before and report.blocks == 4 - report.skipped_blocks
    assert report.complete
    assert_identical(LabelStore.open(out), reference)
    # A rerun of a complete store does nothing.
    again = annotate(images=str(image_tree), out=str(out), progress=False, **ARGS)
    assert (again.blocks, again.skipped_blocks, again.complete) == (0, 4, True)


def test_refuses_to_resume_with_other_arguments(reference, image_tree, capsys):
    before = reference.content_hash()
    with pytest.raises(AnnotateError, match=r"holds a store made with other arguments.*changed annotator arguments: "
                                            r"k \(store: 5, now: 3\)"):
        annotate(images=str(image_tree), out=reference.url, progress=False, **{**ARGS, "topk": 3})
    rc = cli_main(["annotate", "--images", str(image_tree), "--out", reference.url,
                   *[a if a != "3" else "6" for a in CLI_ARGS]])   # --batch-size 6
    assert rc == 2
    assert "changed annotator arguments: batch_size (store: 3, now: 6)" in capsys.readouterr().err
    assert LabelStore.open(reference.url).content_hash() == before


def test_two_ranks_write_the_same_store_as_one(reference, image_tree, tmp_path):
    out = tmp_path / "store"
    procs = [subprocess.Popen(cli_command(image_tree, out), env=subprocess_env(RANK=str(r), WORLD_SIZE="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (1, 0)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "rank 1 of 2: annotated 7 images in 2 blocks" in outputs[0]     # blocks 1 and 3
    assert "rank 0 of 2: annotated 8 images in 2 blocks" in outputs[1]     # blocks 0 and 2
    assert_identical(LabelStore.open(out), reference)


def test_torchrun_resumes_with_the_remaining_blocks_dealt_evenly(reference, image_tree, tmp_path):
    out = tmp_path / "store"
    # A previous run did blocks 0 and 2 (rank 0 of 2, alone); two torchrun ranks share the 2 blocks left.
    first = annotate(images=str(image_tree), out=str(out), progress=False, rank=0, world_size=2, **ARGS)
    assert (first.blocks, first.complete) == (2, False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "dali_relabel.annotate",
           "--images", str(image_tree), "--out", str(out), *CLI_ARGS]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rank 0 of 2: annotated 4 images in 1 blocks" in proc.stdout          # block 1
    assert "rank 1 of 2: annotated 3 images in 1 blocks" in proc.stdout          # block 3
    assert proc.stdout.count(f"{out} is complete") == 2   # judged after every rank is done
    assert_identical(LabelStore.open(out), reference)


@pytest.mark.parametrize("args,message", [
    (["--model", "torchvision:resnet18"], "needs weights: a local state dict or checkpoint file"),
    (["--model", "torchvision:mobilenet_v3_small", "--random-init"], "Hardswish is not affine per location"),
    (["--model", "torchvision:resnet18", "--weights", "/nonexistent/w.pth"], "/nonexistent/w.pth does not exist"),
    (["--model", "torchvision:resnet18", "--random-init", "--num-classes", "1"],
     "dali-relabel annotate: error: --topk 5: exceeds the model's 1 classes\n"),
    (["--model", "torchvision:resnet18", "--random-init", "--num-classes", "1", "--topk", "1"],
     "has labels up to 1 (class folders or list labels) but the model has 1 classes"),
])
def test_cli_errors(image_tree, tmp_path, capsys, args, message):
    rc = cli_main(["annotate", "--images", str(image_tree), "--out", str(tmp_path / "s"), "--size", "64",
                   "--device", "cpu", *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_empty_image_tree_is_an_error(tmp_path, capsys):
    (tmp_path / "imgs" / "cls").mkdir(parents=True)
    rc = cli_main(["annotate", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s"),
                   "--model", "torchvision:resnet18", "--random-init", "--device", "cpu"])
    assert rc == 2 and "no images under" in capsys.readouterr().err


class _Blocks:
    """The block geometry of a store of ``n`` rows (what _batches_by_block reads)."""

    def __init__(self, n: int, block_size: int):
        self.n, self.block_size = n, block_size

    def block_rows(self, b: int) -> range:
        return range(b * self.block_size, min(self.n, (b + 1) * self.block_size))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), block_size=st.integers(1, 12), batch_size=st.integers(1, 9), data=st.data())
def test_batches_never_straddle_blocks_and_cut_each_block_the_same_way(n, block_size, batch_size, data):
    geometry = _Blocks(n, block_size)
    num_blocks = -(-n // block_size)
    blocks = data.draw(st.lists(st.integers(0, num_blocks - 1), unique=True), label="blocks")
    keys = np.array([f"k{i}" for i in range(n)])
    files, batches = _batches_by_block(geometry, keys, blocks, batch_size)
    assert len(files) == len(batches) * batch_size
    seen = []
    for i, (block, start, real) in enumerate(batches):
        rows = geometry.block_rows(block)
        batch_files = files[i * batch_size:(i + 1) * batch_size]
        assert batch_files[:real] == [f"k{r}" for r in rows[start:start + real]]
        assert batch_files[real:] == [f"k{rows[-1]}"] * (batch_size - real)   # padding: the block's last image
        assert start % batch_size == 0 and 0 < real <= batch_size
        seen += list(rows[start:start + real])
    # Every row of every requested block once, in order; and a block's batches do not depend on the others.
    assert seen == [r for b in blocks for r in geometry.block_rows(b)]
    for b in blocks:
        alone = _batches_by_block(geometry, keys, [b], batch_size)[1]
        assert alone == [x for x in batches if x[0] == b]


def test_two_torchrun_nodes_write_the_same_store_on_object_storage(reference, image_tree, tmp_path):
    """torchrun --nnodes 2 (simulated on localhost: two launchers, --node-rank 0 and 1), the store at an fsspec URL
    (fsspec's local file system configured to need no directories, as an object store; zarr goes through its
    fsspec store, as for s3://): the same store as one process's."""
    from multinode_util import torchrun_nodes

    url = f"local://{tmp_path / 'bucket' / 'store.zarr'}"
    outputs = torchrun_nodes(2, 1, ["-m", "dali_relabel.annotate", "--images", str(image_tree), "--out", url,
                                    *CLI_ARGS], tmp_path)
    text = "".join(outputs)
    assert "rank 0 of 2: annotated 8 images in 2 blocks" in text and "rank 1 of 2: annotated 7 images in 2 blocks" in text
    assert_identical(LabelStore.open(url), reference)
