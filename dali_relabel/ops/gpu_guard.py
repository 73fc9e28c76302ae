"""``fn.relabel.<op>`` while only the CPU library is loaded: GPU use loads the CUDA library first.

DALI puts its generated functions into ``fn.relabel`` when a library loads. While the CUDA library is not
loaded, :func:`guard` replaces each by a thin wrapper that, when a call asks for the GPU (``device="gpu"``
or ``"mixed"``, or a GPU input: DALI's own device choice), first calls ``load_plugin(cuda=True)``, which
compiles the CUDA library (once, cached) and loads it, or raises :class:`BuildError` saying how to get nvcc.
Loading the CUDA library calls :func:`unguard`, which puts DALI's functions back, so where it is loaded (a
machine with a visible GPU and nvcc, after first use) ``fn.relabel`` holds DALI's functions untouched.

Only the functional API is guarded: the class API (``ops.relabel.LabelPool(device="gpu")``) reports DALI's
own error, and dynamic mode (``ndd.relabel``) is left alone because DALI inspects its caller's frame there;
both load the CUDA library with ``dali_relabel.load_plugin(cuda=True)``.
"""

from __future__ import annotations

import functools
import types
from typing import Callable

_ORIGINAL = "__dali_relabel_original__"


def wants_gpu(inputs: tuple, kwargs: dict) -> bool:
    """Whether DALI will instantiate the operator on the GPU: an explicit device, else any GPU input."""
    device = kwargs.get("device")
    if device is not None:
        return str(device) in ("gpu", "mixed")
    for x in inputs:
        for item in (x if isinstance(x, (list, tuple)) else (x,)):
            if getattr(item, "device", None) == "gpu":
                return True
    return False


def _guarded(op: Callable, load_cuda: Callable[[], object]) -> Callable:
    @functools.wraps(op)
    def relabel_op(*inputs, **kwargs):
        if wants_gpu(inputs, kwargs):
            load_cuda()
        return op(*inputs, **kwargs)

    setattr(relabel_op, _ORIGINAL, op)
    return relabel_op


def _operators(namespace: types.ModuleType) -> dict[str, Callable]:
    # DALI's generated functions carry their schema name.
    return {name: value for name, value in vars(namespace).items()
            if not name.startswith("_") and hasattr(value, "_schema_name")}


def guard(namespace: types.ModuleType, load_cuda: Callable[[], object]) -> None:
    """Wraps every DALI function in ``namespace`` (``fn.relabel``) so that GPU use calls ``load_cuda`` first."""
    for name, op in _operators(namespace).items():
        if not hasattr(op, _ORIGINAL):
            setattr(namespace, name, _guarded(op, load_cuda))


def unguard(namespace: types.ModuleType) -> None:
    """Puts DALI's own functions back."""
    for name, op in _operators(namespace).items():
        if hasattr(op, _ORIGINAL):
            setattr(namespace, name, getattr(op, _ORIGINAL))


def is_guarded(op: Callable) -> bool:
    return hasattr(op, _ORIGINAL)


__all__ = ["guard", "is_guarded", "unguard", "wants_gpu"]
