"""The loaders: DALI pipelines as PyTorch iterables that keep the DataLoader contract.

* :class:`ReLabelLoader` (``train.py``): random-resized crops with ReLabel soft targets, for training.
* :class:`ReLabelValLoader` (``val.py``): resize + centre crop, hard labels (and the central box's target), each
  image once, for evaluation.

Shared machinery: ``dataset.py`` (images ↔ store rows), ``epochs.py`` (each rank's order and batches per epoch,
from the seed), ``base.py`` (a pipeline per epoch, ``len``, ``set_epoch``, ``state_dict``/``load_state_dict``).
"""

from .base import EpochLoader
from .epochs import LAST_BATCH, EpochPlan, plan_epoch, steps_per_epoch
from .train import LOADER_OUTPUTS, ReLabelLoader
from .val import VAL_LOADER_OUTPUTS, ReLabelValLoader

__all__ = ["EpochLoader", "EpochPlan", "LAST_BATCH", "LOADER_OUTPUTS", "ReLabelLoader", "ReLabelValLoader",
           "VAL_LOADER_OUTPUTS", "plan_epoch", "steps_per_epoch"]
