"""The project's operators as cudasim driver commands: one call adds an operator and its run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .harness import Result, RunOutput, Session, TensorArg

LABEL_POOL = "relabel__LabelPool"
LOOKUP = "relabel__Lookup"
# The label_pool kernel's static shared memory (cub's reduction storage and two broadcast slots,
# padded to 16 bytes): 176 B from both nvcc 13 (sm_90) and cudasim (tests/ops/test_cudasim_nvcc.py).
LABEL_POOL_STATIC_SHARED = 176


def label_pool(session: Session, tag: str, backend: str, scores, classes, starts=None, ends=None,
               **op_args) -> str:
    """Adds a label_pool operator on ``backend`` and one run of it on the batch; returns the tag.

    ``scores``/``classes`` are lists of [H, W, K] arrays; ``starts``/``ends`` lists of (y, x)
    float32 corners, passed as per-sample argument inputs (None: no box argument at all).
    """
    if starts is not None:
        op_args.update(rel_start=TensorArg, rel_end=TensorArg)
    session.op(f"op:{tag}", LABEL_POOL, backend, **op_args)
    boxes = None
    if starts is not None:
        boxes = {"rel_start": [np.asarray(s, np.float32) for s in starts],
                 "rel_end": [np.asarray(e, np.float32) for e in ends]}
    session.run(tag, f"op:{tag}", [list(scores), list(classes)], boxes)
    return tag


def label_pool_both(session: Session, tag: str, batch, **op_args) -> tuple[str, str]:
    """label_pool of ``batch`` = (scores, classes, starts, ends) on the CPU and the GPU backend."""
    return (label_pool(session, f"{tag}/cpu", "cpu", *batch, **op_args),
            label_pool(session, f"{tag}/gpu", "gpu", *batch, **op_args))


def stacked(result: Result, output: int = 0) -> np.ndarray:
    """The samples of one output of a successful run, stacked: [B, ...]."""
    return np.stack(result.expect_ok()[output])


def pair(out: RunOutput, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(CPU, GPU) outputs of a ``label_pool_both`` pair."""
    return stacked(out[f"{tag}/cpu"]), stacked(out[f"{tag}/gpu"])


def lookup(session: Session, tag: str, backend: str, bank: Path, rows, index_dtype=np.int32, index_shape=(1,),
           op_id: str | None = None, misalign: tuple[int, ...] = (), **op_args) -> str:
    """Adds (unless ``op_id`` names an existing one) a lookup operator and one run of it on ``rows``."""
    if op_id is None:
        op_id = f"op:{tag}"
        session.op(op_id, LOOKUP, backend, bank=str(bank), row=TensorArg, **op_args)
    index = [np.full(index_shape, r, index_dtype) for r in rows]
    session.run(tag, op_id, arg_inputs={"row": index}, misalign=misalign)
    return tag
