"""Shared fixtures: running fn.relabel.label_pool on given samples, GPU detection."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

import dali_relabel

# Many tests call fn.relabel.* directly: build (once, cached) and load the plugin for the session.
# (The package itself loads it lazily: tests/test_architecture.py checks that in a fresh process.)
dali_relabel.load_plugin()



@functools.cache
def gpu_unavailable_reason() -> str | None:
    """None when GPU tests can run, else why not."""
    try:
        from nvidia.dali.backend import GetCUDADeviceCount

        if GetCUDADeviceCount() < 1:
            return "no CUDA GPU visible to DALI"
    except Exception as e:  # no driver at all
        return f"CUDA unavailable ({e})"
    if not dali_relabel.loaded_plugin().with_cuda:
        return "plugin was built without nvcc (no CUDA backend)"
    return None


# Marks a test (or, as `pytestmark`, a module) as needing the GPU: it runs where CUDA, a GPU and the
# plugin's CUDA backend exist, and is skipped with the reason everywhere else (see the hook below).
# `pytest -m gpu` selects exactly these tests (benchmarks/gpu_check.sh does).
requires_gpu = pytest.mark.gpu


def pytest_collection_modifyitems(config, items):
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"GPU test: {reason}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


class LabelPoolRunner:
    """DALI pipelines around label_pool, fed per call; samples may differ in shape.

    External sources fix their dtype at the first feed, so one pipeline is kept per dtype pair.
    """

    def __init__(self, device: str = "cpu", max_batch: int = 64, **op_args):
        self.device, self.max_batch, self.op_args = device, max_batch, op_args
        self.pipes = {}

    def _pipe(self, dtypes):
        if dtypes not in self.pipes:
            self.pipes[dtypes] = self._build()
        return self.pipes[dtypes]

    def _build(self):
        device, op_args = self.device, self.op_args

        @pipeline_def(num_threads=2, device_id=0 if device == "gpu" else None,
                      prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
        def pipe():
            scores = fn.external_source(name="scores")
            classes = fn.external_source(name="classes")
            start = fn.external_source(name="rel_start")
            end = fn.external_source(name="rel_end")
            if device == "gpu":
                scores, classes = scores.gpu(), classes.gpu()
            return fn.relabel.label_pool(scores, classes, rel_start=start, rel_end=end, **op_args)

        p = pipe(batch_size=self.max_batch)
        p.build()
        return p

    def __call__(self, scores, classes, starts, ends) -> np.ndarray:
        """Returns the [B, C] outputs for lists of per-sample arrays."""
        assert 0 < len(scores) <= self.max_batch
        p = self._pipe((scores[0].dtype, classes[0].dtype, np.asarray(starts[0]).dtype))
        p.feed_input("scores", [np.ascontiguousarray(s) for s in scores])
        p.feed_input("classes", [np.ascontiguousarray(c) for c in classes])
        p.feed_input("rel_start", [np.asarray(s) for s in starts])
        p.feed_input("rel_end", [np.asarray(e) for e in ends])
        (out,) = p.run()
        if hasattr(out, "as_cpu"):
            out = out.as_cpu()
        return np.stack([np.array(out[i]) for i in range(len(out))])


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    tiny inputs gain nothing from threads, the arithmetic is the same as in one-thread subprocesses, and
    many small ops (EfficientNet's) slow down ~100x when OpenMP threads spin on a loaded 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def label_pool_runner():
    """Cached runner factory: label_pool_runner(device="cpu", num_classes=..., **op_args)."""
    cache: dict = {}

    def get(device: str = "cpu", **op_args) -> LabelPoolRunner:
        key = (device, tuple(sorted(op_args.items())))
        if key not in cache:
            cache[key] = LabelPoolRunner(device, **op_args)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def cudasim_driver():
    """The cudasim driver: the CUDA backends' kernels and host code run on the CPU (tests/cudasim)."""
    from cudasim import harness

    return harness.build("plain")


@pytest.fixture(scope="session")
def cudasim_tsan_driver():
    """The same driver built with ThreadSanitizer."""
    from cudasim import harness

    return harness.build("tsan")
