"""dali_relabel: ReLabel soft targets (Yun et al., CVPR 2021) computed inside NVIDIA DALI pipelines.

The package is organised by the stages of the data flow (docs/ARCHITECTURE.md):

    annotate/  a classifier run fully convolutionally → top-k label maps   (dali-relabel annotate)
    store/     LabelStore (compressed zarr) → LabelBank (memory-mapped)     (import-naver, info, verify)
    ops/       fn.relabel.lookup + fn.relabel.label_pool (C++/CUDA DALI plugin)
    pipelines  DALI graphs: decode, random-resized-crop, box → soft target (top-level ``pipelines/`` folder)
    loader     ReLabelLoader: the pipelines as a PyTorch iterable
    mix, training   CutMix/Mixup with ReLabel targets; a plain training step
    cli/       the ``dali-relabel`` command;  testing/  references and generated data

Importing the package is cheap: it neither imports DALI nor compiles anything. The plugin that adds
``nvidia.dali.fn.relabel.*`` is built (once, cached) and loaded by :func:`load_plugin`, which the
pipelines, the loader and the mixer call when they first need an operator.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# Public name -> module that defines it, imported on first access (PEP 562), so that e.g.
# ``from dali_relabel import LabelStore`` needs neither torch nor DALI.
_EXPORTS = {
    "BuildError": "dali_relabel.ops.build",
    "load_plugin": "dali_relabel.ops.plugin",
    "loaded_plugin": "dali_relabel.ops.plugin",
    "LabelBank": "dali_relabel.store.bank",
    "LabelStore": "dali_relabel.store.label_store",
    "ReLabelLoader": "dali_relabel.loader",
    "ReLabelMix": "dali_relabel.mix",
    "teacher_targets": "dali_relabel.training",
    "train_step": "dali_relabel.training",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dali_relabel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [*_EXPORTS, "__version__"]
