"""The label store's on-disk format: array names, dtypes, chunking and codecs (docs/FORMAT.md).

Everything here uses only zarr v3 *core* data types and codecs (uint8/int16/int32/float16/float32;
transpose, bytes, blosc, zstd), so any zarr v3 reader (zarr-python, tensorstore, zarrs) reads a
store. The codecs were chosen by measurement (``benchmarks/store_bench.py --only codecs``, results
in ``benchmarks/results/``), on maps from :mod:`dali_relabel.testing.synthetic`:

* ``scores``: float16 (default: half the bytes; each logit rounded by up to 2^-11 relative, ~8e-3 at 16) or
  float32 (lossless for the official float32 release); the ``scores_dtype`` attribute says which. Physical
  order (N, K, H, W) through the transpose codec, then Blosc-zstd level 5 with byte shuffle. K-major order puts the spatially smooth plane of each rank together, and byte
  shuffle separates the well-predictable sign/exponent bytes from the noisy mantissa bytes.
  Bit shuffle, zstd level 9 and larger chunks were measured and gained ≤ 3% at up to 20× the
  encoding time.
* ``classes``: natural order (N, H, W, K), Blosc-zstd level 3 without shuffle: a cell's top-k tuple
  repeats across neighbouring cells, which the natural order keeps adjacent (K-major and shuffle
  both measured worse).
* one chunk per block of ``block_size`` samples (default 512): a block is written as whole chunk
  objects, so concurrent writers of different blocks never touch the same object. Sharding was
  measured: with the shard equal to the block it changes nothing but adds an index, with smaller
  inner chunks it costs a few percent; not used.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from zarr.codecs import BloscCodec, TransposeCodec, ZstdCodec

from ..errors import InvalidKeyError
from ..image_folder import key_problem

FORMAT_NAME = "dali_relabel.label_store"
# Format versions (format_version is the oldest reader that reads a store):
#   1: float16 scores, 16-byte block markers (the data digest);
#   2: adds the store's identity (attribute ``identity``, and the second half of every block marker) and allows
#      float32 scores. Every store this version creates is version 2; version 1 stores stay readable, verifiable
#      and resumable (blocks written into them get version 1 markers).
FORMAT_VERSION = 2
FORMAT_VERSION_FLOAT32 = 2  # the oldest version that may hold float32 scores
READABLE_VERSIONS = (1, 2)

SCORES_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
DEFAULT_SCORES_DTYPE = "float16"

SCORES, CLASSES, LABELS, KEYS, BLOCK_DIGESTS = "scores", "classes", "labels", "keys", "block_digests"
ARRAYS = (SCORES, CLASSES, LABELS, KEYS, BLOCK_DIGESTS)
DIGEST_BYTES = 16  # BLAKE2b-128 of a block's scores bytes followed by its classes bytes
IDENTITY_BYTES = 16  # BLAKE2b-128 of the store's identity (see store_identity)
# A block marker (a row of block_digests): the data digest, then (version 2) the identity of the store
# the writer wrote it for.
MARKER_BYTES = {1: DIGEST_BYTES, 2: DIGEST_BYTES + IDENTITY_BYTES}

COMPLETENESS_RULE = (
    f"block b (rows [b*block_size, min((b+1)*block_size, num_samples))) is complete iff row b of "
    f"'{BLOCK_DIGESTS}' is not all zero; that row is the BLAKE2b digest ({DIGEST_BYTES} bytes) of the block's "
    f"'{SCORES}' bytes followed by its '{CLASSES}' bytes (C order, little endian), followed by the store's "
    f"identity ({IDENTITY_BYTES} bytes, attribute 'identity') as the writer knew it. Each row is its own chunk "
    f"object, written after the block's data, so concurrent writers never share an object.")
COMPLETENESS_RULE_V1 = (
    f"block b (rows [b*block_size, min((b+1)*block_size, num_samples))) is complete iff row b of "
    f"'{BLOCK_DIGESTS}' is not all zero; that row is the BLAKE2b digest ({DIGEST_BYTES} bytes) of the block's "
    f"'{SCORES}' bytes followed by its '{CLASSES}' bytes (C order, little endian). Each row is its own chunk "
    f"object, written after the block's data, so concurrent writers never share an object.")
IDENTITY_RULE = (
    "BLAKE2b-128 (hex) of the canonical JSON of format, num_samples, height, width, k, num_classes, block_size, "
    "annotator, class_names and the scores/classes data types, followed by the keys array's bytes and the labels "
    "(int32 little endian)")
KEYS_ENCODING = "utf-8, zero-padded to the second dimension (tensorstore and other readers lack a string type)"


def scores_dtype(name: str) -> np.dtype:
    """The stored dtype of a ``scores_dtype`` name ("float16" or "float32"); ValueError names the choices."""
    if name not in SCORES_DTYPES:
        raise ValueError(f"scores_dtype must be one of {sorted(SCORES_DTYPES)}, got {name!r}")
    return SCORES_DTYPES[name]


def scores_dtype_name(dtype) -> str:
    """The ``scores_dtype`` name of a stored dtype (inverse of :func:`scores_dtype`)."""
    dtype = np.dtype(dtype)
    for name, d in SCORES_DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"scores of dtype {dtype} are not a label store dtype ({sorted(SCORES_DTYPES)})")


def format_version(scores_dtype_name_: str) -> int:
    """The ``format_version`` a new store with these scores is written with (see FORMAT_VERSION): every new store
    carries the identity, so version 2 for both dtypes."""
    scores_dtype(scores_dtype_name_)
    return FORMAT_VERSION


def check_key(key, where: str) -> str:
    """``key`` as str if valid, else :class:`InvalidKeyError` naming it (``where``: e.g. ``keys[3]``)."""
    problem = key_problem(str(key) if isinstance(key, np.str_) else key)
    if problem is not None:
        raise InvalidKeyError(f"{where} = {key!r} {problem}")
    return str(key)


def store_identity(*, num_samples: int, height: int, width: int, k: int, num_classes: int, block_size: int,
                   annotator: dict, class_names, scores_dtype, classes_dtype, key_bytes: np.ndarray,
                   labels: np.ndarray) -> bytes:
    """The identity of a store: what a writer must agree on to add blocks to it (see :data:`IDENTITY_RULE`).

    Two creators with different settings, or a block written for another store, disagree on it: every
    block marker carries the identity its writer knew, so ``verify`` catches any mix.
    """
    h = hashlib.blake2b(digest_size=IDENTITY_BYTES)
    h.update(json.dumps({"format": FORMAT_NAME, "num_samples": int(num_samples), "height": int(height),
                         "width": int(width), "k": int(k), "num_classes": int(num_classes),
                         "block_size": int(block_size), "annotator": annotator, "class_names": class_names,
                         "scores_dtype": np.dtype(scores_dtype).str, "classes_dtype": np.dtype(classes_dtype).str},
                        sort_keys=True, separators=(",", ":")).encode())
    h.update(np.ascontiguousarray(key_bytes, np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, "<i4").tobytes())
    return h.digest()


def class_dtype(num_classes: int) -> np.dtype:
    """int16 when every class index fits, else int32."""
    return np.dtype("<i2") if num_classes <= np.iinfo(np.int16).max + 1 else np.dtype("<i4")


def invalid_entries(scores: np.ndarray, classes: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Where a block of maps breaks the format's rules (docs/FORMAT.md): every check, by kind.

    Args:
        scores: ``[n, H, W, K]`` float16 or float32 logits, as stored. classes: ``[n, H, W, K]`` integers.
        num_classes: C.

    Returns:
        ``{kind: bool mask}``: ``not-finite`` and ``class-range`` ``[n, H, W, K]``; ``unsorted`` (a score above
        its predecessor) and ``duplicate-class`` (between neighbours of the sorted classes) ``[n, H, W, K - 1]``.
    """
    s = scores.astype(np.float32)
    srt = np.sort(classes, axis=-1)
    with np.errstate(invalid="ignore"):  # inf - inf along K: non-finite scores are reported as such
        unsorted = np.diff(s, axis=-1) > 0
    return {"not-finite": ~np.isfinite(s), "class-range": (classes < 0) | (classes >= num_classes),
            "unsorted": unsorted, "duplicate-class": srt[..., 1:] == srt[..., :-1]}


def scores_codecs(itemsize: int = 2) -> dict:
    """create_array keyword arguments for the scores codecs (``itemsize``: 2 for float16, 4 for float32)."""
    return {"filters": [TransposeCodec(order=(0, 3, 1, 2))],
            "compressors": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=itemsize)]}


def classes_codecs(itemsize: int) -> dict:
    """create_array keyword arguments for the classes codecs."""
    return {"filters": [], "compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle",
                                                      typesize=itemsize)]}


def small_array_codecs() -> dict:
    """labels and keys: written once at creation, zstd alone suffices."""
    return {"filters": [], "compressors": [ZstdCodec(level=5)]}


def encode_keys(keys: list[str]) -> np.ndarray:
    """Keys → uint8 [N, L] UTF-8, zero-padded (L = longest key, at least 1)."""
    encoded = [k.encode("utf-8") for k in keys]
    width = max([1] + [len(e) for e in encoded])
    return np.frombuffer(b"".join(e.ljust(width, b"\0") for e in encoded), np.uint8).reshape(len(keys), width)


def decode_keys(raw: np.ndarray) -> np.ndarray:
    """uint8 [N, L] → str array [N] (the inverse of :func:`encode_keys`)."""
    raw = np.ascontiguousarray(raw, np.uint8)
    as_bytes = raw.view(f"S{raw.shape[1]}").reshape(raw.shape[0])  # numpy strips the trailing zeros
    return np.char.decode(as_bytes, "utf-8")


def block_digest(scores: np.ndarray, classes: np.ndarray) -> bytes:
    """The completion digest of a block, as stored in ``block_digests``.

    Args:
        scores: the block's scores in the store's dtype (float16 or float32): their bytes are hashed.
        classes: the block's classes in the store's dtype.
    """
    if scores.dtype not in (np.float16, np.float32):
        raise TypeError(f"block_digest: scores must be float16 or float32 as stored, got {scores.dtype}")
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(np.ascontiguousarray(scores, scores.dtype.newbyteorder("<")).data)
    h.update(np.ascontiguousarray(classes, classes.dtype.newbyteorder("<")).data)
    digest = h.digest()
    # An all-zero row means "incomplete": a (2^-128-likely) all-zero digest is nudged.
    return digest if any(digest) else b"\x01" + digest[1:]


def block_marker(digest: bytes, identity: bytes | None) -> bytes:
    """A block's marker row: its digest, then (version 2 markers) the identity of the store it was written for."""
    return digest if identity is None else digest + identity


