"""DALI pipeline definitions for ReLabel training and validation, and their building blocks.

Installed as ``dali_relabel.pipelines``. Import a definition and build it, or use the building blocks
(a reader: :class:`FileReader` for image files, :class:`ShardReader` for webdataset shards;
:func:`random_resized_crop_box`, the image stages, :func:`relabel_targets`) inside your own pipeline::

    from dali_relabel.config import AugmentConfig
    from dali_relabel.pipelines import FileReader, relabel_train_pipeline
    pipe = relabel_train_pipeline(batch_size=256, num_threads=8, device_id=0,
                                  reader=FileReader(root, file_list="train.txt"),  # "<path> <store row>" lines
                                  bank=store.materialize(), augment=AugmentConfig(crop_size=224))
"""

from .crop import center_crop_box, normalized_corners, random_resized_crop_box
from .image import decode, decode_window, normalize, resize_shorter, resize_square
from .reader import READER_NAME, FileReader
from .shard_reader import ShardReader
from .targets import as_bank, relabel_targets
from .train import IMAGENET_MEAN, IMAGENET_STD, TRAIN_OUTPUTS, relabel_train_pipeline
from .val import VAL_OUTPUTS, relabel_val_pipeline

__all__ = ["FileReader", "IMAGENET_MEAN", "IMAGENET_STD", "READER_NAME", "TRAIN_OUTPUTS", "VAL_OUTPUTS", "as_bank",
           "center_crop_box", "decode", "decode_window", "normalize", "normalized_corners",
           "random_resized_crop_box", "relabel_targets", "relabel_train_pipeline", "relabel_val_pipeline",
           "resize_shorter", "resize_square", "ShardReader"]
