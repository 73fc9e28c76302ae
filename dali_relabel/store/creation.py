"""The arguments of a new store, checked and turned into what creation writes: attributes, keys, labels, identity."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidArgument, InvalidKeyError
from . import format as fmt

WHERE = "LabelStore.create"


@dataclasses.dataclass
class CreateRequest:
    """A checked request to create (or resume) a store.

    Attributes:
        url: where. attrs: the group attributes to write. keys: the keys; key_bytes: as stored ([N, L] uint8).
        labels: int32 [N] (all −1 when none were given; labels_given says whether). class_names: or None.
        identity: the store's identity (16 bytes). exist_ok: resume an identical existing store.
    """

    url: object
    attrs: dict
    keys: list[str]
    key_bytes: np.ndarray
    labels: np.ndarray
    labels_given: bool
    class_names: list[str] | None
    identity: bytes
    exist_ok: bool


def create_request(url, *, keys: Sequence[str], num_classes: int, height: int, width: int, k: int,
                   labels=None, class_names: Sequence[str] | None = None, annotator: dict | None = None,
                   block_size: int = 512, scores_dtype: str = fmt.DEFAULT_SCORES_DTYPE,
                   exist_ok: bool = False) -> CreateRequest:
    """Checks ``LabelStore.create``'s arguments (see there) and computes the attributes and identity.

    Raises:
        InvalidArgument: a number, labels, class names or annotator that cannot be stored (named).
        InvalidKeyError: a key that is not a plain relative path, or a duplicate (named).
    """
    keys = check_keys(keys)
    n = len(keys)
    for name, value, low in (("num_classes", num_classes, 1), ("height", height, 1), ("width", width, 1),
                             ("k", k, 1), ("block_size", block_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise InvalidArgument(name, value, f"must be an integer >= {low}", where=WHERE)
    if k > num_classes:
        raise InvalidArgument("k", k, f"cannot exceed num_classes ({num_classes})", where=WHERE)
    if scores_dtype not in fmt.SCORES_DTYPES:
        raise InvalidArgument("scores_dtype", scores_dtype, f"must be one of {sorted(fmt.SCORES_DTYPES)}", where=WHERE)
    labels_arr = check_labels(labels, n, num_classes)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise InvalidArgument("class_names", f"<{len(class_names)} names>",
                                  f"must hold num_classes={num_classes} names", where=WHERE)
    annotator = dict(annotator or {})
    try:
        annotator = json.loads(json.dumps(annotator))  # normalised, so that resume compares like with like
    except (TypeError, ValueError) as e:
        raise InvalidArgument("annotator", "...", f"must be JSON-serialisable ({e})", where=WHERE) from None

    key_bytes = fmt.encode_keys(keys)
    identity = fmt.store_identity(num_samples=n, height=height, width=width, k=k, num_classes=num_classes,
                                  block_size=block_size, annotator=annotator, class_names=class_names,
                                  scores_dtype=fmt.scores_dtype(scores_dtype),
                                  classes_dtype=fmt.class_dtype(int(num_classes)),
                                  key_bytes=key_bytes, labels=labels_arr)
    attrs = {
        "format": fmt.FORMAT_NAME, "format_version": fmt.format_version(scores_dtype),
        "num_samples": n, "height": int(height), "width": int(width), "k": int(k),
        "num_classes": int(num_classes), "scores_dtype": scores_dtype, "values": "logits",
        "layout": "scores/classes [N, H, W, K]: row = image y, column = image x, K sorted by descending score",
        "annotator": annotator, "class_names": class_names,
        "block_size": int(block_size), "num_blocks": -(-n // block_size),
        "completeness": {"array": fmt.BLOCK_DIGESTS, "rule": fmt.COMPLETENESS_RULE},
        "keys_encoding": fmt.KEYS_ENCODING,
        "identity": identity.hex(), "identity_rule": fmt.IDENTITY_RULE,
    }
    return CreateRequest(url=url, attrs=attrs, keys=keys, key_bytes=key_bytes, labels=labels_arr,
                         labels_given=labels is not None, class_names=class_names, identity=identity,
                         exist_ok=exist_ok)


def check_keys(keys) -> list[str]:
    """The keys as str, each a plain relative path (``format.check_key``), all distinct; else the error names one."""
    if isinstance(keys, str):
        raise InvalidArgument("keys", keys, "must be a sequence of strings, not one string", where=WHERE)
    keys = list(keys)
    if not keys:
        raise InvalidArgument("keys", keys, "must not be empty (a store holds at least one sample)", where=WHERE)
    keys = [fmt.check_key(key, f"{WHERE}: keys[{i}]") for i, key in enumerate(keys)]
    if len(set(keys)) != len(keys):
        seen, dups = set(), []
        for key in keys:
            if key in seen:
                dups.append(key)
            seen.add(key)
        raise InvalidKeyError(f"{WHERE}: {len(dups)} duplicate key(s), e.g. {dups[:5]}; keys must be unique")
    return keys


def check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    """int32 [n] labels in ``[-1, num_classes)`` (all −1 for None)."""
    if labels is None:
        return np.full(n, -1, np.int32)
    arr = np.asarray(labels)
    if arr.shape != (n,) or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{WHERE}: labels must be {n} integers (one per key), got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    bad = (arr < -1) | (arr >= num_classes)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(f"{WHERE}: labels[{i}] = {arr[i]} outside [-1, {num_classes}) (−1 means unknown)")
    return arr.astype(np.int32)


__all__ = ["CreateRequest", "check_keys", "check_labels", "create_request"]
