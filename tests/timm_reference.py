"""timm's own augmentation ops (PIL), run as timm runs them, and a harness that runs ours (DALI) on the same
images: the reference for tests/pipelines/test_timm_ops.py and test_auto_augment.py."""

from __future__ import annotations

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from dali_relabel.augment_spec import fill_color, translate_const
from dali_relabel.normalization import IMAGENET_MEAN

SIZE = 64


def sample_images(size: int = SIZE) -> list[np.ndarray]:
    """Four uint8 HWC images: two photographs (scikit-image's), one of them squeezed into [50, 170] (low
    contrast: AutoContrast and Equalize have work to do), and a gradient with noise."""
    import skimage.data

    photos = [skimage.data.astronaut()[40:296, 150:406], skimage.data.coffee()[50:350, 150:450]]
    out = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in photos]
    out.append((50 + out[1].astype(np.float32) * (120 / 255)).astype(np.uint8))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    ramp = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], -1)
    out.append(np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8))
    return out


def timm_hparams(size: int = SIZE) -> dict:
    """What timm's create_transform hands its augment ops for this size and ImageNet's mean (bilinear)."""
    return {"translate_const": translate_const(size), "img_mean": fill_color(IMAGENET_MEAN),
            "interpolation": Image.BILINEAR}


def timm_op(name: str, image: np.ndarray, magnitude: float, negate: bool, rand: float, monkeypatch) -> np.ndarray:
    """timm's ``AugmentOp(name)`` at ``magnitude`` (prob 1), with its coin flips fixed: the sign negated when
    ``negate``, GaussianBlurRand's uniform draw at fraction ``rand``."""
    import random

    from timm.data import auto_augment as timm_aa

    draws = iter([0.9 if negate else 0.1, rand] * 4)
    with monkeypatch.context() as m:
        m.setattr(random, "random", lambda: next(draws))
        m.setattr(random, "uniform", lambda a, b: a + (b - a) * rand)
        op = timm_aa.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=timm_hparams(image.shape[0]))
        return np.asarray(op(Image.fromarray(image)))


def dali_op(name: str, images, magnitudes, negates, rands, arithmetic: bool = False) -> list[np.ndarray]:
    """``pipelines.timm_ops.OPS[name]`` on the given images and per-sample arguments (CPU pipeline; with
    ``arithmetic``, the implementation the GPU runs)."""
    from dali_relabel.pipelines.timm_ops import OPS, OpContext

    size = images[0].shape[0]
    ctx = OpContext(size=(size, size), fill=fill_color(IMAGENET_MEAN), translate_const=translate_const(size),
                    arithmetic=arithmetic)

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=None, seed=0)
    def pipe():
        data = fn.external_source(lambda: list(images), batch=True, layout="HWC", dtype=types.UINT8)
        mag = fn.external_source(lambda: [np.float32(m) for m in magnitudes], batch=True)
        neg = fn.external_source(lambda: [np.int32(n) for n in negates], batch=True)
        rnd = fn.external_source(lambda: [np.float32(r) for r in rands], batch=True)
        return OPS[name](data, mag, neg, rnd, ctx)

    p = pipe()
    p.build()
    (out,) = p.run()
    return [np.array(out[i]) for i in range(len(images))]


# ---- which ops timm applies, with which magnitudes -----------------------------------------------------------

def timm_sequences(text: str, n: int, monkeypatch, seed: int = 0) -> list[tuple[tuple[str, float], ...]]:
    """Runs timm's RandAugment / AutoAugment for ``text`` on ``n`` images whose ops only record themselves:
    per image, the (op name, magnitude) of each op applied, in order (timm's own choices: which ops, in which
    order, whether applied, with which magnitude noise)."""
    import random

    from timm.data import auto_augment as timm_aa

    with monkeypatch.context() as m:
        for name in list(timm_aa.NAME_TO_OP):
            m.setitem(timm_aa.NAME_TO_OP, name, lambda img, level, _name=name, **kw: img + ((_name, level),))
            m.setitem(timm_aa.LEVEL_TO_ARG, name, lambda level, hparams: (level,))
        if text.startswith("rand"):
            transform = timm_aa.rand_augment_transform(text, timm_hparams())
        else:
            transform = timm_aa.auto_augment_transform(text, timm_hparams())
        random.seed(seed)
        np.random.seed(seed)
        return [transform(()) for _ in range(n)]


def dali_sequences(text: str, n: int, monkeypatch, seed: int = 0, width: int = 8):
    """The same record from ``pipelines.auto_augment.auto_augment``: each op, when applied, shifts a [1, width, 3]
    image right by one pixel and writes (its index + 1, round(10 · magnitude), negate) into the first pixel."""
    from nvidia.dali.pipeline import do_not_convert

    from dali_relabel.augment_spec import parse_auto_augment
    from dali_relabel.pipelines import timm_ops
    from dali_relabel.pipelines.auto_augment import auto_augment

    spec = parse_auto_augment(text)
    names = spec.op_names

    def marker(code: int):
        @do_not_convert
        def op(images, magnitude, negate, rand, ctx):
            pixel = fn.stack(types.Constant(np.float32(code)), magnitude * 10.0, fn.cast(negate, dtype=types.FLOAT))
            pixel = fn.reshape(fn.cast(pixel, dtype=types.UINT8), shape=[1, 1, 3], layout="HWC")
            return fn.cat(pixel, images[:, 0:width - 1], axis=1)
        return op

    with monkeypatch.context() as m:
        for i, name in enumerate(names):
            m.setitem(timm_ops.OPS, name, marker(i + 1))
        ctx = timm_ops.OpContext(size=(1, width), fill=(0, 0, 0), translate_const=0)

        @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed, enable_conditionals=True)
        def pipe():
            blank = fn.reshape(types.Constant(np.zeros((1, width, 3), np.uint8)), layout="HWC")
            return auto_augment(blank, spec, ctx, lambda k: seed * 1000 + k)

        p = pipe()
        p.build()
        (out,) = p.run()
    records = []
    for i in range(n):
        pixels = np.array(out[i])[0]
        applied = [px for px in pixels if px[0] > 0][::-1]          # oldest first
        records.append(tuple((names[px[0] - 1], px[1] / 10.0, int(px[2])) for px in applied))
    return records
