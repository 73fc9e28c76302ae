"""timm integration (needs timm: ``pip install dali_relabel[timm]``).

* :func:`create_loader`: timm's ``create_loader`` arguments (and ``resolve_data_config``'s dict) → a
  ``ReLabelLoader`` / ``ReLabelValLoader`` whose augmentations are timm's, on DALI.
* :class:`Mixup`: timm's ``Mixup`` arguments and call for ReLabel's soft targets (timm's own one-hots them).

docs/TIMM.md: what each argument does, what is refused and why, how the soft targets behave under augmentation.
"""

from __future__ import annotations

try:
    import timm as _timm  # noqa: F401  (the integration is for timm users; its strings need timm's tables)
except ImportError:  # pragma: no cover - exercised without timm only
    raise ImportError("dali_relabel.timm needs timm: pip install timm (or dali_relabel[timm])") from None

from .loader import TIMM_ARGUMENTS, create_loader
from .mixup import Mixup

__all__ = ["Mixup", "TIMM_ARGUMENTS", "create_loader"]
