"""Label maps at rest and in service.

Modules:
    format: the store's on-disk format (array names, dtypes, codecs, entry rules, block digests).
    label_store: :class:`LabelStore`, the compressed zarr v3 store the annotator and importers write.
    creation, location: a new store's arguments checked; where a store lives and what a destination holds.
    info: what ``dali-relabel info`` reports.
    bank: :class:`LabelBank`, the uncompressed memory-mapped copy that ``fn.relabel.lookup`` serves.
    naver_import: importer of the official relabel_imagenet release (one ``.pt`` file per image).

Nothing here needs DALI or a compiler.
"""

from .bank import LabelBank
from .label_store import LabelStore

__all__ = ["LabelBank", "LabelStore"]
