"""GPU use of an operator while only the CPU library is loaded: load the CUDA library first.

Every ``fn.relabel.<op>(...)`` call instantiates the operator's class, ``ops.relabel.<Op>(device=..., ...)``,
with the device DALI decided (``device="gpu"``/``"mixed"`` given, or GPU inputs); the class API does the same
directly. While the CUDA library is not loaded, :func:`guard` wraps the constructor of each operator that has
a GPU backend (a ``DALI_REGISTER_OPERATOR(..., GPU)`` in a ``.cu`` file) so that a GPU instance first calls
``load_plugin(cuda=True)``, which compiles the CUDA library (once, cached) and loads it, or raises
:class:`~dali_relabel.ops.toolchain.BuildError` saying how to get nvcc. Loading the CUDA library calls
:func:`unguard`, which puts DALI's constructor back.

The constructor is the one place that sees DALI's own device decision for both APIs, and a wrapper there
adds no frame to the call stack DALI records for its error messages (that stack ends at the
``fn.relabel.<op>`` call). ``fn.relabel`` keeps DALI's functions untouched. Dynamic mode (``ndd.relabel``)
has its own operator classes and is not guarded: GPU use there needs ``load_plugin(cuda=True)`` first on a
machine without a visible GPU (``BankPooling`` does this).
"""

from __future__ import annotations

import functools
import types
from typing import Callable

from .sources import SCHEMA_PREFIX, gpu_operator_classes

_ORIGINAL = "__dali_relabel_original__"
GPU_DEVICES = ("gpu", "mixed")


def _guarded_classes(namespace: types.ModuleType) -> dict[str, type]:
    """The operator classes in ``namespace`` (``ops.relabel``) that have a GPU backend."""
    names = set(gpu_operator_classes())
    return {name: cls for name, cls in vars(namespace).items()
            if name in names and isinstance(cls, type) and getattr(cls, "schema_name", "") == SCHEMA_PREFIX + name}


def _guarded_init(init: Callable, load_cuda: Callable[[], object]) -> Callable:
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if str(kwargs.get("device", "cpu")) in GPU_DEVICES:
            load_cuda()
        init(self, *args, **kwargs)

    setattr(__init__, _ORIGINAL, init)
    return __init__


def guard(namespace: types.ModuleType, load_cuda: Callable[[], object]) -> None:
    """Makes a GPU instance of each operator class in ``namespace`` call ``load_cuda`` first."""
    for cls in _guarded_classes(namespace).values():
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, _ORIGINAL):
            cls.__init__ = _guarded_init(init, load_cuda)


def unguard(namespace: types.ModuleType) -> None:
    """Puts DALI's constructors back."""
    for cls in _guarded_classes(namespace).values():
        init = cls.__dict__.get("__init__")
        if init is not None and hasattr(init, _ORIGINAL):
            cls.__init__ = getattr(init, _ORIGINAL)


def is_guarded(cls: type) -> bool:
    return hasattr(cls.__dict__.get("__init__"), _ORIGINAL)


__all__ = ["guard", "is_guarded", "unguard"]
