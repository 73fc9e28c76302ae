"""dali_relabel: ReLabel soft targets (Yun et al., CVPR 2021) computed inside NVIDIA DALI pipelines.

Importing the package builds (once, cached) and loads the DALI plugin, which adds
``nvidia.dali.fn.relabel.label_pool`` (and the other ``fn.relabel.*`` operators).
"""

__version__ = "0.1.0"

from .build import BuildError
from .plugin import load_plugin, loaded_plugin

load_plugin()

from .bank import LabelBank  # noqa: E402
from .loader import ReLabelLoader  # noqa: E402
from .mix import ReLabelMix  # noqa: E402
from .store import LabelStore  # noqa: E402
from .training import teacher_targets, train_step  # noqa: E402

__all__ = ["BuildError", "LabelBank", "LabelStore", "ReLabelLoader", "ReLabelMix", "load_plugin", "loaded_plugin",
           "teacher_targets", "train_step", "__version__"]
