"""Webdataset tar shards: DALI's index files, shard sets, store-key matching, writing shards from an ImageFolder.

Layer 0 (no DALI, no torch): the loaders (``dali_relabel.loader``) and ``pipelines.ShardReader`` build on it.
Conventions: docs/SHARDS.md.
"""

from .index import INDEX_VERSION, Component, SampleEntry, index_path_for, read_index, scan_tar, write_index
from .keys import match_sample_keys, strip_extension
from .paths import WIDS_INDEX_NAME, expand_braces, is_shard_spec, shard_paths
from .reading_order import write_reading_order
from .shard_set import IMAGE_EXTS, LABEL_EXT, ShardSet

__all__ = ["Component", "IMAGE_EXTS", "INDEX_VERSION", "LABEL_EXT", "SampleEntry", "ShardSet", "WIDS_INDEX_NAME",
           "expand_braces", "index_path_for", "is_shard_spec", "match_sample_keys", "read_index", "scan_tar",
           "shard_paths", "strip_extension", "write_index", "write_reading_order"]
