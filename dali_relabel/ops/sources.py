"""The operators' C++/CUDA sources under ``csrc/`` and the operator names their schemas define.

Standard library only: :mod:`dali_relabel.ops.namespace` reads the operator names at ``import dali_relabel``.

Which source goes into which library (see :mod:`dali_relabel.ops.build`):

    ``*.cc`` → ``libdali_relabel.so``: every ``DALI_SCHEMA``, the CPU operators, host code shared by both
        backends (e.g. ``lookup/bank.cc``). Compiled with the C++ compiler alone.
    ``*.cu`` → ``libdali_relabel_cuda.so``: the GPU operators' registrations and kernels, linked against the
        first library (a GPU registration needs its schema, defined there).
    ``*.h`` are shared by both.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
SCHEMA_PREFIX = "relabel__"  # DALI module `relabel`: relabel__LabelPool -> fn.relabel.label_pool


def sources(root: Path | None = None) -> tuple[list[Path], list[Path], list[Path]]:
    """(C++ sources, CUDA sources, headers) under ``root`` (default ``csrc/``), in a stable order."""
    root = CSRC if root is None else root
    return sorted(root.rglob("*.cc")), sorted(root.rglob("*.cu")), sorted(root.rglob("*.h"))


def snake_case(name: str) -> str:
    """DALI's name for the functional API: ``LabelPool`` → ``label_pool``, ``CheckImage`` → ``check_image``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@functools.cache
def operator_classes() -> tuple[str, ...]:
    """The operators' class names (``LabelPool``, ...), read from the ``DALI_SCHEMA(relabel__X)`` lines."""
    names = set()
    for path in sources()[0]:
        names.update(re.findall(r"^\s*DALI_SCHEMA\(\s*" + SCHEMA_PREFIX + r"(\w+)\s*\)", path.read_text(),
                                flags=re.MULTILINE))
    return tuple(sorted(names))


@functools.cache
def gpu_operator_classes() -> tuple[str, ...]:
    """The operators with a GPU backend: a ``DALI_REGISTER_OPERATOR(relabel__X, ..., GPU)`` in a ``.cu`` file."""
    names = set()
    for path in sources()[1]:
        names.update(re.findall(r"DALI_REGISTER_OPERATOR\(\s*" + SCHEMA_PREFIX + r"(\w+)\s*,[^;]*\bGPU\s*\)",
                                path.read_text()))
    return tuple(sorted(names))


def operator_functions() -> tuple[str, ...]:
    """The operators' functional names (``label_pool``, ...): ``fn.relabel.<name>``, ``ndd.relabel.<name>``."""
    return tuple(snake_case(n) for n in operator_classes())


__all__ = ["CSRC", "SCHEMA_PREFIX", "gpu_operator_classes", "operator_classes", "operator_functions", "snake_case", "sources"]
