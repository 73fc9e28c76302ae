"""What a loader's batches look like: frozen, validated settings shared by the loaders, the pipelines and the mixer.

Three small configs, each checked when it is made (a bad value is refused with its name and its valid range):

* :class:`AugmentConfig` — the training images: random-resized-crop (``crop_size``, ``area``, ``aspect``),
  ``flip_prob``, ``interpolation``, normalization (``mean``, ``std``), output ``dtype`` and ``memory_format``.
* :class:`EvalConfig` — the evaluation images: resize the shorter side to ``floor(crop_size / crop_pct)`` and
  centre-crop ``crop_size`` (timm's ``crop_pct``), with the same output settings.
* :class:`TargetConfig` — how the soft targets are pooled: ``temperature``, ``transpose_box``, ``label_type``,
  ``bank_memory``.

``ReLabelLoader(images, store, 256, crop_size=176, temperature=0.5)`` builds them from keywords
(:func:`split_settings`); ``loader.augment`` / ``loader.target_config`` hand them on (``ReLabelMix.for_loader``,
a validation loader of the same size, the pipelines). New augmentations become new fields of
:class:`AugmentConfig`; the loaders and pipelines accept them by name with no other change.

Normalization: ``mean``/``std`` may be given on the 0–1 scale (torchvision's ``(0.485, 0.456, 0.406)``) or on the
0–255 scale (``(123.675, 116.28, 103.53)``): when any of the six values exceeds 1 they are read as 0–255 and
divided by 255. The configs hold the 0–1 values; the pipelines scale them to DALI's 0–255 pixels.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Mapping

from .augment_spec import ERASE_MODES, color_jitter_factors, parse_auto_augment
from .normalization import IMAGENET_MEAN, IMAGENET_STD

# Output image dtypes, by canonical name; the aliases are torch's names for the same types.
DTYPES = ("float32", "float16", "bfloat16")
_DTYPE_ALIASES = {"float": "float32", "half": "float16"}
MEMORY_FORMATS = ("contiguous", "channels_last")
# Resampling filters, by the names torchvision and timm use (DALI's INTERP_* in pipelines/image.py).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "triangular")
# Training crops may also draw bilinear or bicubic per image (timm's "random", its train.py default).
TRAIN_INTERPOLATIONS = (*INTERPOLATIONS, "random")
LABEL_TYPES = ("localized_multi", "localized_single", "global_multi", "global_single")
BANK_MEMORY = ("device", "host")


# ---- checks shared by every argument of the loaders and configs -------------------------------------------

def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; bools, floats ("2.5", 2.0) and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{_range(low, high)}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value}")
    return value


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number{_interval(low, high, low_open)}, got {value!r}")
    value = float(value)
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ValueError(f"{name} must be in {_interval(low, high, low_open).strip()}, got {value}")
    return value


def _interval(low, high, low_open) -> str:
    if low is None and high is None:
        return ""
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "inf)" if high is None else f"{high:g}]"
    return f" {lo}, {hi}"


def check_choice(name: str, value, choices) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_range(name: str, value, *, low: float, high: float | None, what: str) -> tuple[float, float]:
    """A ``(min, max)`` pair with ``low < min <= max`` (``<= high``); ``what`` names the rule in messages."""
    try:
        lo, hi = (check_float(name, v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) with {what}, got {value!r}") from None
    if not (lo > low and lo <= hi and (high is None or hi <= high)):
        raise ValueError(f"{name} must be a pair (min, max) with {what}, got {tuple(value)!r}")
    return lo, hi


def canonical_dtype(value) -> str:
    """"float32" | "float16" | "bfloat16" from a name ("half", "float" too) or a torch dtype."""
    text = value if isinstance(value, str) else str(value).removeprefix("torch.")
    if type(value).__name__ == "dtype" or isinstance(value, str):
        text = _DTYPE_ALIASES.get(text, text)
        if text in DTYPES:
            return text
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (a name or the torch dtype), got {value!r}")


def canonical_memory_format(value) -> str:
    """"contiguous" | "channels_last" from a name or ``torch.contiguous_format`` / ``torch.channels_last``."""
    text = value if isinstance(value, str) else str(value).removeprefix("torch.")
    text = {"contiguous_format": "contiguous"}.get(text, text)
    if text in MEMORY_FORMATS:
        return text
    raise ValueError(f"memory_format must be torch.contiguous_format or torch.channels_last (or their names "
                     f"{', '.join(map(repr, MEMORY_FORMATS))}), got {value!r}")


def _normalization(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on the 0–1 scale, three values each (one value is repeated)."""
    values = {}
    for name, v in (("mean", mean), ("std", std)):
        v = (v,) if isinstance(v, numbers.Real) else tuple(v)
        if len(v) == 1:
            v = v * 3
        if len(v) != 3:
            raise ValueError(f"{name} must hold 1 or 3 values (R, G, B), got {len(v)}")
        values[name] = tuple(check_float(f"{name}[{i}]", x) for i, x in enumerate(v))
    if any(s <= 0 for s in values["std"]):
        raise ValueError(f"std must be > 0 in every channel, got {values['std']}")
    if max(*values["mean"], *values["std"]) > 1.0:  # the 0-255 scale
        values = {k: tuple(x / 255.0 for x in v) for k, v in values.items()}
    return values["mean"], values["std"]


# ---- the configs ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The output images: size, resampling, normalization, dtype and memory layout (train and eval share these).

    Attributes:
        crop_size: output side in pixels (the images are ``[B, 3, crop_size, crop_size]``), >= 1.
        interpolation: resampling filter: "bilinear" (default), "bicubic", "nearest", "lanczos", "triangular".
        mean, std: per-channel normalization, ``(x / 255 - mean) / std``; 0–1 or 0–255 scale (see the module).
        dtype: "float32", "float16" or "bfloat16" (or the torch dtype). float32/float16 are made in DALI;
            bfloat16 (which DALI does not produce) by one cast of the float32 batch on its device.
        memory_format: "contiguous" (NCHW) or "channels_last" (``torch.channels_last``: DALI writes HWC and the
            batch is the NCHW view of it, no copy).
    """

    crop_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    dtype: str = "float32"
    memory_format: str = "contiguous"

    INTERPOLATIONS = INTERPOLATIONS   # (a class constant, not a field)

    def __post_init__(self):
        self._set("crop_size", check_int("crop_size", self.crop_size, low=1))
        check_choice("interpolation", self.interpolation, self.INTERPOLATIONS)
        mean, std = _normalization(self.mean, self.std)
        self._set("mean", mean)
        self._set("std", std)
        self._set("dtype", canonical_dtype(self.dtype))
        self._set("memory_format", canonical_memory_format(self.memory_format))

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # frozen: normalized once, here

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def replace(self, **changes):
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class AugmentConfig(ImageConfig):
    """Training images: a random-resized-crop of each image, flipped with ``flip_prob``, resized to ``crop_size``,
    then (all off by default) timm's augmentations, in timm's order (docs/TIMM.md).

    Attributes:
        area: range of the crop's area as a fraction of the image's, ``0 < min <= max <= 1``.
        aspect: range of the crop's aspect ratio (width / height), ``0 < min <= max``.
        flip_prob: probability of a horizontal flip, in ``[0, 1]`` (the target is the same: the box is).
        interpolation: as for :class:`ImageConfig`, or "random": bilinear or bicubic per image (timm's "random").
        auto_augment: a timm RandAugment / AutoAugment string (``"rand-m9-mstd0.5-inc1"``, ``"original"``, ...;
            needs timm), or None. Applied to the resized crop; the target stays the crop box's.
        color_jitter: torchvision's ColorJitter strength, a number (brightness = contrast = saturation) or
            (brightness, contrast, saturation[, hue = 0]); None or 0: off. Applied in a random order per image.
        color_jitter_prob: apply the colour jitter to an image with this probability (None: always).
        grayscale_prob: probability of converting an image to grayscale (torchvision's RandomGrayscale).
        blur_prob: probability of a Gaussian blur, 23-pixel kernel, sigma uniform in [0.1, 2] (timm's
            ``gaussian_blur_prob``).
        erase_prob: probability of random erasing (timm's ``re_prob``), after normalization.
        erase_mode: erased pixels: "const" (0 after normalization: the mean colour), "rand" (one N(0, 1) value per
            channel and region) or "pixel" (N(0, 1) per pixel) — timm's ``re_mode``.
        erase_count: up to this many erased regions per image (the count uniform in 1..erase_count; timm's
            ``re_count``).
        (and the output settings of :class:`ImageConfig`)
    """

    area: tuple[float, float] = (0.08, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    auto_augment: str | None = None
    color_jitter: float | tuple[float, ...] | None = None
    color_jitter_prob: float | None = None
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    erase_prob: float = 0.0
    erase_mode: str = "const"
    erase_count: int = 1

    INTERPOLATIONS = TRAIN_INTERPOLATIONS

    def __post_init__(self):
        super().__post_init__()
        self._set("area", check_range("area", self.area, low=0.0, high=1.0, what="0 < min <= max <= 1"))
        self._set("aspect", check_range("aspect", self.aspect, low=0.0, high=None, what="0 < min <= max"))
        self._set("flip_prob", check_float("flip_prob", self.flip_prob, low=0.0, high=1.0))
        if self.auto_augment is not None:
            parse_auto_augment(self.auto_augment)
        self._set("color_jitter", color_jitter_factors(self.color_jitter))
        if self.color_jitter_prob is not None:
            self._set("color_jitter_prob", check_float("color_jitter_prob", self.color_jitter_prob, low=0.0,
                                                       high=1.0))
        for name in ("grayscale_prob", "blur_prob", "erase_prob"):
            self._set(name, check_float(name, getattr(self, name), low=0.0, high=1.0))
        check_choice("erase_mode", self.erase_mode, ERASE_MODES)
        self._set("erase_count", check_int("erase_count", self.erase_count, low=1))

    @property
    def auto_augment_spec(self):
        """The parsed ``auto_augment`` (``augment_spec.AutoAugmentSpec``), or None."""
        return None if self.auto_augment is None else parse_auto_augment(self.auto_augment)


@dataclasses.dataclass(frozen=True)
class EvalConfig(ImageConfig):
    """Evaluation images: resize the shorter side to ``resize_size``, centre-crop ``crop_size`` (timm's "center").

    Attributes:
        crop_pct: ``crop_size / resize_size``, in ``(0, 1]``; ``resize_size = floor(crop_size / crop_pct)`` as in
            timm (0.875: 224 of 256).
        (and the output settings of :class:`ImageConfig`)
    """

    crop_pct: float = 0.875

    def __post_init__(self):
        super().__post_init__()
        self._set("crop_pct", check_float("crop_pct", self.crop_pct, low=0.0, high=1.0, low_open=True))

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop: ``floor(crop_size / crop_pct)``."""
        # (+1e-9: 56 / (56 / 64) must be 64, not 63.99999999999999)
        return math.floor(self.crop_size / self.crop_pct + 1e-9)


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """How each crop's soft target is pooled from its image's label map (``fn.relabel.label_pool``).

    Attributes:
        temperature: softmax temperature, > 0.
        transpose_box: pool the transposed box, reproducing the official relabel_imagenet targets exactly.
        label_type: "localized_multi" (ReLabel), "localized_single" (one-hot of the pooled argmax), "global_multi"
            (the whole map, ignoring the crop) or "global_single": the paper's factor analysis.
        bank_memory: GPU pipelines: "device" (copy the bank to the GPU once) or "host" (read pinned host memory).
    """

    temperature: float = 1.0
    transpose_box: bool = False
    label_type: str = "localized_multi"
    bank_memory: str = "device"

    def __post_init__(self):
        object.__setattr__(self, "temperature",
                           check_float("temperature", self.temperature, low=0.0, low_open=True))
        check_bool("transpose_box", self.transpose_box)
        check_choice("label_type", self.label_type, LABEL_TYPES)
        check_choice("bank_memory", self.bank_memory, BANK_MEMORY)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


# Old keyword names -> their names now (each use warns once per call site).
RENAMED_SETTINGS = {"official_axes": "transpose_box"}


def renamed(owner: str, old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{owner}: {old}= is deprecated, use {new}= (same meaning)", DeprecationWarning,
                  stacklevel=stacklevel)


def split_settings(owner: str, settings: Mapping[str, Any], configs: Mapping[str, Any],
                   stacklevel: int = 4) -> dict[str, Any]:
    """Builds each config from its given instance (or default) plus the keyword settings naming its fields.

    Args:
        owner: who is asking, for messages (e.g. "ReLabelLoader").
        settings: keyword arguments such as ``crop_size=176, temperature=0.5`` (old names are accepted with a
            DeprecationWarning, see ``RENAMED_SETTINGS``).
        configs: parameter name -> config instance, or the config class for its defaults
            (e.g. ``{"augment": AugmentConfig, "target_config": given_target_config}``).

    Returns:
        parameter name -> config with the settings applied (validated).

    Raises:
        TypeError: a setting is no field of any config (the message lists the accepted names).
    """
    pending = {name: {} for name in configs}
    owners = {}
    for pname, config in configs.items():
        for f in dataclasses.fields(config):
            owners.setdefault(f.name, pname)
    for key, value in settings.items():
        if key in RENAMED_SETTINGS:
            renamed(owner, key, RENAMED_SETTINGS[key], stacklevel)
            key = RENAMED_SETTINGS[key]
        if key not in owners:
            raise TypeError(f"{owner} got an unexpected keyword argument {key!r}; settings accepted by keyword: "
                            f"{', '.join(sorted(owners))}")
        pending[owners[key]][key] = value
    out = {}
    for pname, config in configs.items():
        if isinstance(config, type):
            out[pname] = config(**pending[pname])
        else:
            out[pname] = dataclasses.replace(config, **pending[pname]) if pending[pname] else config
    return out


__all__ = ["AugmentConfig", "BANK_MEMORY", "DTYPES", "EvalConfig", "INTERPOLATIONS", "ImageConfig", "LABEL_TYPES",
           "MEMORY_FORMATS", "TRAIN_INTERPOLATIONS", "TargetConfig", "canonical_dtype", "canonical_memory_format", "check_bool",
           "check_choice", "check_float", "check_int", "check_range", "split_settings"]
