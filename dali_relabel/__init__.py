"""dali_relabel: ReLabel soft targets (Yun et al., CVPR 2021) computed inside NVIDIA DALI pipelines.

The package is organised by the stages of the data flow (docs/ARCHITECTURE.md):

    annotate/  a classifier run fully convolutionally → top-k label maps   (dali-relabel annotate)
    store/     LabelStore (compressed zarr) → LabelBank (memory-mapped)     (import-naver, info, verify)
    ops/       fn.relabel.lookup + fn.relabel.label_pool (C++/CUDA DALI plugin)
    pipelines  DALI graphs: decode, random-resized-crop, box → soft target (top-level ``pipelines/`` folder)
    loader/    ReLabelLoader, ReLabelValLoader: the pipelines as PyTorch iterables (epochs, seeds, resume)
    config     AugmentConfig, EvalConfig, TargetConfig: the settings the loaders, pipelines and mixer share
    mix, training   CutMix/Mixup with ReLabel targets; a plain training step
    cli/       the ``dali-relabel`` command;  testing/  references and generated data

Importing the package is cheap: it neither imports DALI nor compiles anything. The plugin that adds
``nvidia.dali.fn.relabel.*`` is built (once, cached) and loaded on the first use of an operator
(``fn.relabel.label_pool``, ``ops.relabel.LabelPool``, ``ndd.relabel.label_pool``, whichever was imported
first) or by :func:`load_plugin` (see :mod:`dali_relabel.ops.namespace`).
"""

from __future__ import annotations

from .lazy_exports import lazy_exports
from .ops import namespace as _namespace

from ._version import __version__

# Public name -> module that defines it, imported on first access (PEP 562), so that e.g.
# ``from dali_relabel import LabelStore`` needs neither torch nor DALI.
_EXPORTS = {
    "BuildError": "dali_relabel.ops.toolchain",
    "load_plugin": "dali_relabel.ops.plugin",
    "loaded_plugin": "dali_relabel.ops.plugin",
    "LabelBank": "dali_relabel.store.bank",
    "LabelStore": "dali_relabel.store.label_store",
    "AugmentConfig": "dali_relabel.config",
    "EvalConfig": "dali_relabel.config",
    "TargetConfig": "dali_relabel.config",
    "ReLabelLoader": "dali_relabel.loader",
    "ReLabelValLoader": "dali_relabel.loader",
    "ReLabelMix": "dali_relabel.mix",
    "teacher_targets": "dali_relabel.training",
    "train_step": "dali_relabel.training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [*_EXPORTS, "__version__"]

# fn.relabel (and ops.relabel, ndd.relabel) load the plugin on first use, whenever DALI is imported.
_namespace.install()
