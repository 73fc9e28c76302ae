"""DALI pipeline definitions for ReLabel training and validation, and their building blocks.

Installed as ``dali_relabel.pipelines``. Import a definition and build it, or use the building blocks
(:func:`random_resized_crop_box`, :func:`relabel_targets`) inside your own pipeline::

    from dali_relabel.pipelines import relabel_train_pipeline
    pipe = relabel_train_pipeline(batch_size=256, num_threads=8, device_id=0, file_root=..., file_list=...,
                                  bank=str(store.materialize().path), num_classes=1000)
"""

from .crop import normalized_corners, random_resized_crop_box
from .targets import relabel_targets
from .train import IMAGENET_MEAN, IMAGENET_STD, TRAIN_OUTPUTS, relabel_train_pipeline
from .val import VAL_OUTPUTS, relabel_val_pipeline

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TRAIN_OUTPUTS", "VAL_OUTPUTS", "normalized_corners",
           "random_resized_crop_box", "relabel_targets", "relabel_train_pipeline", "relabel_val_pipeline"]
