"""RandAugment and AutoAugment as timm applies them, in a DALI graph (needs ``enable_conditionals=True``).

Every random choice is drawn per sample before any branching, with seeds from the pipeline's augmentation seed,
so a batch's augmentations depend on that seed and the batch's index only (the loaders' resume relies on it).
Then, per layer, DALI's conditionals split the batch by the chosen op (a binary split over the op indices), apply
each op to its samples and merge them back.

RandAugment (``spec.kind == "rand"``), per image and layer: an op uniformly from the set (with replacement), or
by ``spec.weights`` without replacement across layers; applied with the op's probability; magnitude
``M`` (+ N(0, mstd) noise, or uniform in [0, M] when mstd is inf), clipped to [0, mmax]; its sign negated with
probability 1/2 (for the ops timm negates). AutoAugment (``"policy"``): one sub-policy uniformly per image; its
ops in order, each with its own probability and magnitude (and the same noise).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

from dali_relabel.augment_spec import AutoAugmentSpec, TimmOp

from .timm_ops import OPS, OpContext, identity


def select(ops: Sequence[Callable], index, *args):
    """``ops[index](*args)`` per sample, ``index`` an int32 per-sample DataNode in ``[0, len(ops))``: a binary
    split of the batch by index (DALI conditionals), each op applied to its part, the parts merged back."""
    return _split(ops, 0, len(ops) - 1, index, args)


def _split(ops, lo: int, hi: int, index, args):
    if lo == hi:
        return ops[lo](*args)
    mid = (lo + hi) // 2
    if index <= mid:
        out = _split(ops, lo, mid, index, args)
    else:
        out = _split(ops, mid + 1, hi, index, args)
    return out


@do_not_convert
def _table(values, dtype):
    return types.Constant(np.asarray(values, dtype=dtype))


@do_not_convert
def _magnitude(base, spec: AutoAugmentSpec, seed: int):
    """Per-sample magnitude: ``base`` (+ noise as timm draws it), clipped to [0, mmax] (float32)."""
    if spec.magnitude_std == math.inf:
        base = base * fn.random.uniform(range=[0.0, 1.0], seed=seed)
    elif spec.magnitude_std > 0:
        base = base + spec.magnitude_std * fn.random.normal(seed=seed)
    return dmath.clamp(base, 0.0, spec.magnitude_max)


@do_not_convert
def _choose_ops(spec: AutoAugmentSpec, seed: Callable[[int], int]):
    """Per layer: (op index into ``spec.op_names``, or len(op_names) for "not applied"; base magnitude)."""
    names = spec.op_names
    skip = len(names)
    layers = []
    if spec.kind == "rand":
        position = {name: i for i, name in enumerate(names)}
        op_of = _table([position[op.name] for op in spec.ops], np.int32)
        prob_of = _table([op.prob for op in spec.ops], np.float32)
        mag_of = _table([op.magnitude for op in spec.ops], np.float32)
        count = len(spec.ops)
        left = None if spec.weights is None else _table(spec.weights, np.float32)
        for layer in range(spec.num_layers):
            if left is None:          # timm: uniformly, with replacement
                choice = fn.random.uniform(values=list(range(count)), dtype=types.INT32, seed=seed(10 * layer + 1))
            else:                     # timm: by weight, without replacement (renormalized over the rest)
                choice = fn.random.choice(count, p=left / fn.reductions.sum(left), seed=seed(10 * layer + 1))
                choice = fn.cast(choice, dtype=types.INT32)
                left = left * (1.0 - fn.one_hot(choice, num_classes=count, dtype=types.FLOAT))
            layers.append((op_of[choice], prob_of[choice], mag_of[choice]))
    else:
        subs = spec.sub_policies
        depth = spec.num_layers
        chosen = fn.random.uniform(values=list(range(len(subs))), dtype=types.INT32, seed=seed(1))
        for j in range(depth):
            stage = [sp[j] if j < len(sp) else TimmOp("", 0.0, 0.0) for sp in subs]
            op_of = _table([names.index(op.name) if op.name else skip for op in stage], np.int32)
            layers.append((op_of[chosen], _table([op.prob for op in stage], np.float32)[chosen],
                           _table([op.magnitude for op in stage], np.float32)[chosen]))
    out = []
    for layer, (op, prob, base) in enumerate(layers):
        applied = fn.cast(fn.random.coin_flip(probability=prob, seed=seed(10 * layer + 2)), dtype=types.INT32)
        op = applied * op + (1 - applied) * skip              # not applied: the identity branch
        out.append((op, base))
    return out


def auto_augment(images, spec: AutoAugmentSpec, ctx: OpContext, seed: Callable[[int], int]):
    """Applies ``spec`` to uint8 HWC images (all ``ctx.size``).

    Args:
        images: uint8 HWC DataNode (CPU or GPU, as ``ctx.device``).
        spec: the parsed ``auto_augment`` string (``dali_relabel.augment_spec.parse_auto_augment``).
        ctx: image size, fill colour, translation constant, device.
        seed: stream number → generator seed (distinct streams; see ``pipelines/train.py``).

    Returns:
        uint8 HWC images, same shapes.
    """
    ops = [OPS[name] for name in spec.op_names] + [identity]
    for layer, (op, base) in enumerate(_choose_ops(spec, seed)):
        magnitude = _magnitude(base, spec, seed(10 * layer + 3))
        negate = fn.cast(fn.random.coin_flip(probability=0.5, seed=seed(10 * layer + 4)), dtype=types.INT32)
        rand = fn.random.uniform(range=[0.0, 1.0], seed=seed(10 * layer + 5))
        images = select(ops, op, images, magnitude, negate, rand, ctx)
    return images


__all__ = ["auto_augment", "select"]
