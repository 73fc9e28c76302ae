"""Shared by the loader tests: one small demo dataset per session, the devices to run on, small helpers.

Import the fixtures into a test module (``from loader_util import device, small_demo``)."""

from __future__ import annotations

import pytest
from conftest import requires_gpu

from dali_relabel.testing.demo_dataset import build_demo_dataset

# The loader contract holds on both pipelines: every test taking `device` runs on the CPU, and on the GPU
# where one exists (skipped with the reason elsewhere).
DEVICES = ["cpu", pytest.param("gpu", marks=requires_gpu)]


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """24 images of 150×200 in 10 classes (one class folder stays empty), with their label store."""
    # One fixed directory: modules importing this fixture share the built dataset (it is found, not rebuilt).
    return build_demo_dataset(tmp_path_factory.getbasetemp() / "small_demo", num_images=24, height=150, width=200,
                              progress=False)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def train_loader(demo, device="cpu", batch_size=5, **kw):
    """A small ReLabelLoader over the demo (32-px crops, 2 threads, seed 3 unless given)."""
    from dali_relabel import ReLabelLoader

    kw.setdefault("crop_size", 32)
    kw.setdefault("num_threads", 2)
    kw.setdefault("seed", 3)
    with pytest.warns(UserWarning, match="class folders hold no images"):
        return ReLabelLoader(demo.images, demo.labels, batch_size, device=device, **kw)


def on_cpu(batch):
    """A batch with every tensor on the CPU (lists and other values unchanged), as a tuple."""
    import torch

    batch = batch if isinstance(batch, tuple) else (batch,)
    return tuple(v.cpu() if isinstance(v, torch.Tensor) else v for v in batch)


def same_batches(a, b) -> bool:
    """Two lists of batches are equal, exactly (tensors bit for bit)."""
    import torch

    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(on_cpu(x), on_cpu(y)):
            if isinstance(u, torch.Tensor):
                if u.dtype != v.dtype or u.shape != v.shape or not torch.equal(u, v):
                    return False
            elif u != v:
                return False
    return True
