"""What timm's augmentation strings mean, as plain data the pipelines build DALI graphs from (no DALI here).

``auto_augment`` takes timm's strings, and means what it means in timm (``timm.data.auto_augment``):

* ``"rand-m9-mstd0.5-inc1"``: RandAugment. Per image, ``n`` ops (default 2) are chosen from the op set
  (uniformly, with replacement; with the weighted sets ``tweights``/``t3aw`` by weight, without replacement),
  each applied with probability ``p`` (default 0.5) at magnitude ``m`` (default 10) on timm's 0–10 scale,
  with Gaussian noise of std ``mstd`` on the magnitude (``mstd`` > 100: uniform in ``[0, m]``), clipped to
  ``[0, mmax]`` (default 10). ``inc1`` picks the ops whose strength increases with the magnitude.
* ``"original"``, ``"originalr"``, ``"v0"``, ``"v0r"``, ``"3a"`` (optionally ``-mstd<x>``): AutoAugment. Per
  image one sub-policy is chosen uniformly; each of its ops is applied with its own probability and magnitude.

The op sets, weights and policies are read from the installed timm (its ``rand_augment_transform`` /
``auto_augment_transform`` build them from the string), so they are timm's own, for the timm version
installed: ``auto_augment`` needs timm. This module is stricter than timm's parser: a section timm would
skip or misread silently (``rand-foo``, ``rand-tfoo``) is refused, and so is AugMix (``augmix-...``), which
mixes several augmented copies of an image and has no place in a one-crop-one-target pipeline here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

# timm's magnitude scale: magnitude M is the fraction M / 10 of an op's range (timm's _LEVEL_DENOM).
LEVEL_DENOM = 10.0
# timm's relative translation range at magnitude 10 (its hparams' default "translate_pct").
TRANSLATE_PCT = 0.45

# timm op names that have a DALI implementation in pipelines/auto_augment.py (the test checks both agree).
SUPPORTED_OPS = frozenset({
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing", "PosterizeOriginal",
    "Solarize", "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing", "Contrast", "ContrastIncreasing",
    "Brightness", "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateX",
    "TranslateY", "TranslateXRel", "TranslateYRel", "Desaturate", "GaussianBlur", "GaussianBlurRand",
})
# The ops that move pixels (their target: see docs/TIMM.md, "Soft targets under augmentation").
GEOMETRIC_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel",
                           "TranslateYRel"})

AUTO_AUGMENT_POLICIES = ("original", "originalr", "v0", "v0r", "3a")
_RAND_SECTIONS = {"m": "magnitude (int)", "n": "ops per image (int)", "p": "probability of each op (float)",
                  "mstd": "magnitude noise std (float)", "mmax": "magnitude upper bound (int)",
                  "inc": "0/1, ops increasing with magnitude", "t": "op set: weights, 3aw or 3a"}
_RAND_OP_SETS = ("weights", "3aw", "3a")


@dataclasses.dataclass(frozen=True)
class TimmOp:
    """One op as timm configures it.

    Attributes:
        name: timm's op name (``"Rotate"``, ``"PosterizeIncreasing"``, ...).
        prob: probability of applying it once chosen.
        magnitude: its magnitude on timm's scale (10 = the op's full range).
    """

    name: str
    prob: float
    magnitude: float


@dataclasses.dataclass(frozen=True)
class AutoAugmentSpec:
    """A parsed ``auto_augment`` string (see the module).

    Attributes:
        text: the string.
        kind: "rand" (RandAugment) or "policy" (AutoAugment).
        num_layers: rand: ops chosen per image. policy: the longest sub-policy's length.
        ops: rand: the op set to choose from (each with its probability and magnitude).
        weights: rand: choice weights (summing to 1; ops are then chosen without replacement, as timm does), or
            None (uniform, with replacement).
        sub_policies: policy: the sub-policies, one chosen uniformly per image.
        magnitude_std: 0 (fixed magnitudes), > 0 (Gaussian noise of this std per application), or inf (uniform
            in ``[0, magnitude]``).
        magnitude_max: magnitudes are clipped to ``[0, magnitude_max]``.
    """

    text: str
    kind: str
    num_layers: int
    ops: tuple[TimmOp, ...] = ()
    weights: tuple[float, ...] | None = None
    sub_policies: tuple[tuple[TimmOp, ...], ...] = ()
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM

    @property
    def op_names(self) -> tuple[str, ...]:
        """Every op this spec may apply, each once, in first-use order."""
        ops = self.ops if self.kind == "rand" else tuple(op for sp in self.sub_policies for op in sp)
        return tuple(dict.fromkeys(op.name for op in ops))

    @property
    def geometric(self) -> tuple[str, ...]:
        """The ops that move pixels."""
        return tuple(n for n in self.op_names if n in GEOMETRIC_OPS)


def parse_auto_augment(text: str) -> AutoAugmentSpec:
    """Parses timm's ``auto_augment`` string (cached; the result is immutable).

    Raises:
        ValueError: an unknown or malformed string (the message names the section and the valid ones), AugMix,
            an op with no DALI implementation here. ImportError: timm is not installed.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"auto_augment must be a timm augmentation string such as 'rand-m9-mstd0.5-inc1' or "
                         f"'original', got {text!r}")
    return _parse(text)


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> AutoAugmentSpec:
    head, *sections = text.split("-")
    if head == "augmix":
        raise ValueError(f"auto_augment={text!r}: AugMix is not supported (it blends several augmented copies of "
                         f"each image and is trained with a split-batch JSD loss); use a RandAugment string "
                         f"('rand-m9-mstd0.5-inc1') or an AutoAugment policy ({', '.join(AUTO_AUGMENT_POLICIES)})")
    if head == "rand":
        _check_rand_sections(text, sections)
    elif head in AUTO_AUGMENT_POLICIES:
        for section in sections:
            if not re.fullmatch(r"mstd\d+(\.\d*)?", section):
                raise ValueError(f"auto_augment={text!r}: unknown section {section!r}; an AutoAugment policy takes "
                                 f"only 'mstd<float>' (magnitude noise)")
    else:
        raise ValueError(f"auto_augment={text!r}: unknown augmentation {head!r}; expected 'rand-...' (RandAugment) "
                         f"or an AutoAugment policy: {', '.join(AUTO_AUGMENT_POLICIES)}")
    try:
        from timm.data import auto_augment as timm_aa
    except ImportError:
        raise ImportError(f"auto_augment={text!r} needs timm (pip install timm): the op sets and policies are "
                          f"read from it") from None
    # hparams only shape the ops' arguments (fill colour, translation), which the pipeline computes itself.
    try:
        if head == "rand":
            built = timm_aa.rand_augment_transform(text, {"translate_const": 100, "img_mean": (128, 128, 128)})
            spec = _from_rand(text, built)
        else:
            built = timm_aa.auto_augment_transform(text, {"translate_const": 100, "img_mean": (128, 128, 128)})
            spec = _from_policy(text, built)
    except (AssertionError, ValueError, KeyError) as e:
        raise ValueError(f"auto_augment={text!r}: timm cannot parse it ({e or type(e).__name__})") from None
    unknown = sorted(set(spec.op_names) - SUPPORTED_OPS)
    if unknown:
        raise ValueError(f"auto_augment={text!r}: timm's ops {', '.join(unknown)} have no DALI implementation here")
    return spec


def _check_rand_sections(text: str, sections: list[str]) -> None:
    valid = "; ".join(f"{k}<{v}>" for k, v in _RAND_SECTIONS.items())
    for section in sections:
        if section.startswith("t"):
            if section[1:] not in _RAND_OP_SETS:
                raise ValueError(f"auto_augment={text!r}: unknown op set {section!r}; timm's are "
                                 f"{', '.join('t' + s for s in _RAND_OP_SETS)} (or none: the default set)")
            continue
        key, value = (re.split(r"(\d.*)", section) + [""])[:2]
        if key not in _RAND_SECTIONS or not value:
            raise ValueError(f"auto_augment={text!r}: unknown section {section!r}; RandAugment sections are {valid}")
        number = r"\d+" if key in ("m", "n", "mmax", "inc") else r"\d+(\.\d*)?"
        if not re.fullmatch(number, value):
            raise ValueError(f"auto_augment={text!r}: section {section!r}: {key} takes {_RAND_SECTIONS[key]}")


def _magnitude_settings(ops) -> tuple[float, float]:
    """(magnitude_std, magnitude_max) shared by timm's ops (timm sets them for the whole string)."""
    stds = {float(op.magnitude_std) for op in ops}
    maxes = {op.magnitude_max or LEVEL_DENOM for op in ops}   # timm: `magnitude_max or _LEVEL_DENOM`
    assert len(stds) == 1 and len(maxes) == 1, (stds, maxes)
    std = stds.pop()
    return (math.inf if std == float("inf") else std), float(maxes.pop())


def _from_rand(text: str, built) -> AutoAugmentSpec:
    ops = tuple(TimmOp(op.name, float(op.prob), float(op.magnitude)) for op in built.ops)
    weights = None
    if built.choice_weights is not None:
        weights = tuple(float(w) for w in built.choice_weights)
        if built.num_layers > sum(w > 0 for w in weights):
            raise ValueError(f"auto_augment={text!r}: {built.num_layers} ops per image chosen without replacement "
                             f"from {sum(w > 0 for w in weights)} weighted ops")
    if built.num_layers < 0:
        raise ValueError(f"auto_augment={text!r}: n must be >= 0")
    std, mmax = _magnitude_settings(built.ops)
    return AutoAugmentSpec(text, "rand", int(built.num_layers), ops=ops, weights=weights, magnitude_std=std,
                           magnitude_max=mmax)


def _from_policy(text: str, built) -> AutoAugmentSpec:
    subs = tuple(tuple(TimmOp(op.name, float(op.prob), float(op.magnitude)) for op in sp) for sp in built.policy)
    std, mmax = _magnitude_settings([op for sp in built.policy for op in sp])
    return AutoAugmentSpec(text, "policy", max(len(sp) for sp in subs), sub_policies=subs, magnitude_std=std,
                           magnitude_max=mmax)


def fill_color(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """timm's fill colour of rotated/sheared/translated areas: the normalization mean in 0–255 (``img_mean``)."""
    return tuple(min(255, round(255 * m)) for m in mean)


def translate_const(crop_size: int) -> int:
    """timm's absolute translation at magnitude 10 (TranslateX/Y): ``int(0.45 × image size)``."""
    return int(crop_size * TRANSLATE_PCT)


# ---- colour jitter and random erasing ----------------------------------------------------------------------

ERASE_MODES = ("const", "rand", "pixel")


def color_jitter_factors(value) -> tuple[float, float, float] | None:
    """timm's ``color_jitter`` as (brightness, contrast, saturation), or None when all are 0 / not given.

    A number means the same for the three (timm's convention: no hue); a tuple has 3 values, or 4 with hue.

    Raises:
        ValueError: negative values, wrong length, or a hue > 0 (refused: DALI's hue ops rotate in YIQ space,
            torchvision's ``ColorJitter`` shifts the HSV hue; the two differ).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"color_jitter must be a number or a tuple of 3 or 4 numbers, got {value!r}")
    values = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(values) not in (3, 4) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"color_jitter must be a number >= 0 or (brightness, contrast, saturation[, hue]) >= 0, "
                         f"got {value!r}")
    if len(values) == 4 and values[3] > 0:
        raise ValueError(f"color_jitter hue={values[3]} is not supported: DALI's hue operators rotate colours in "
                         f"YIQ space, torchvision's ColorJitter shifts the HSV hue. Use hue 0 (timm's default: a "
                         f"number gives brightness, contrast and saturation only)")
    factors = tuple(float(v) for v in values[:3])
    return None if not any(factors) else factors


__all__ = ["AUTO_AUGMENT_POLICIES", "AutoAugmentSpec", "ERASE_MODES", "GEOMETRIC_OPS", "LEVEL_DENOM",
           "SUPPORTED_OPS", "TRANSLATE_PCT", "TimmOp", "color_jitter_factors", "fill_color", "parse_auto_augment",
           "translate_const"]
