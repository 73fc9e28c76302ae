"""The machine annotator: a classifier run fully convolutionally over every image, top-k per cell, into a store.

Modules:
    models: builds the annotator model from a ``torchvision:``/``timm:``/``module:factory`` spec and local weights.
    dense: turns a classifier with a global-pooled head into a fully convolutional one (logits per cell).
    runner: :func:`annotate`, the resumable, multi-process run from an image folder to a label store.

``python -m dali_relabel.annotate`` runs it from the command line (the ``__main__`` module).
"""

from .runner import AnnotateError, AnnotateReport, annotate

__all__ = ["AnnotateError", "AnnotateReport", "annotate"]
