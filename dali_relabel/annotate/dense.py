"""Fully convolutional conversion of a classifier: its head applied at every location of the last feature map.

ReLabel's machine annotator removes the classifier's global pooling and applies the final linear layer at
every spatial location (a 1×1 convolution), turning ``[B, 3, S, S] -> [B, C]`` into
``[B, 3, S, S] -> [B, C, h, w]``. This module does that generically for the standard head shapes:

* torchvision ResNet / RegNet: ``avgpool`` + ``fc``;
* torchvision EfficientNet / ConvNeXt (any ``features`` + ``avgpool`` + ``classifier`` model): the
  ``classifier`` Sequential, e.g. ConvNeXt's ``LayerNorm2d, Flatten, Linear``;
* timm models (``forward_features`` + ``global_pool`` + classifier, or a ``head`` module holding
  ``global_pool`` ... ``fc`` such as ``ClassifierHead`` / ``NormMlpClassifierHead``).

The head after global average pooling must be affine per location: Linear, 1×1 Conv2d, LayerNorm over
channels, BatchNorm (eval), Dropout, Flatten, Identity. A normalization layer in the head (ConvNeXt's
LayerNorm) normalizes every location with the statistics of the pooled feature vector, which keeps the head
affine in the features. Hence the invariant this module guarantees and :func:`mean_logit_error` checks: the
spatial mean of the map equals the original model's logits (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelError

SUPPORTED_HEAD_LAYERS = ("Linear, 1x1 Conv2d, LayerNorm/LayerNorm2d over channels, BatchNorm (eval), Dropout, "
                         "Flatten, Identity")
EXPECTED_ARCHITECTURES = (
    "torchvision ResNet/RegNet (avgpool + fc), a torchvision features + avgpool + classifier model "
    "(EfficientNet, ConvNeXt), or a timm CNN (forward_features + global_pool + classifier, or a head with "
    "global_pool and fc)")


class DenseClassifier(nn.Module):
    """A classifier with its global average pooling removed and its head applied at every location.

    Args:
        model: the original classifier (kept as a submodule: ``.to()`` and ``.eval()`` reach it).
        features: ``features(model, x)`` -> pre-pooling feature map ``[B, C, h, w]`` (or ``[B, h, w, C]`` when
            ``channels_last_features``).
        head: the layers applied after global pooling, in order (validated at construction).
        family: short description of the detected architecture family (for messages).
        channels_last_features: whether ``features`` returns NHWC (some timm models).
    """

    def __init__(self, model: nn.Module, features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 head: list[nn.Module], family: str, channels_last_features: bool = False):
        super().__init__()
        self.model = model
        self._features = features
        self._head = head  # references into self.model; a plain list so they are not registered twice
        self.family = family
        self.channels_last_features = channels_last_features

    def forward_hwc(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` images -> ``[B, h, w, num_classes]`` float32 logit maps (channels last)."""
        f = self._features(self.model, x)
        if f.dim() != 4:
            raise ModelError(f"{self.family}: the feature extractor returned shape {list(f.shape)}; expected a "
                             "4-D CNN feature map [B, C, h, w] (token-based models such as ViTs are not supported)")
        y = f if self.channels_last_features else f.permute(0, 2, 3, 1)
        for layer in self._head:
            y = _apply_per_location(layer, y)
        return y.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` images -> ``[B, num_classes, h, w]`` float32 logit maps."""
        return self.forward_hwc(x).permute(0, 3, 1, 2)


def _is_noop(layer: nn.Module) -> bool:
    # Dropout is the identity in eval mode; Flatten only matters for the pooled [B, C, 1, 1] tensor.
    return isinstance(layer, (nn.Identity, nn.Flatten, nn.modules.dropout._DropoutNd, nn.AlphaDropout))


def _is_global_avg_pool(layer: nn.Module) -> bool:
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        size = layer.output_size
        return size in (1, (1, 1))
    pool_type = getattr(layer, "pool_type", None)  # timm SelectAdaptivePool2d: 'avg', 'fast', 'fastavg', ...
    if type(layer).__name__ == "SelectAdaptivePool2d" and isinstance(pool_type, str):
        return pool_type != "" and "max" not in pool_type.lower()
    return False


def _is_pool(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) or \
        type(layer).__name__ == "SelectAdaptivePool2d"


def _head_problem(layer: nn.Module) -> str | None:
    """Why ``layer`` cannot be applied per location, or None when it can."""
    if _is_pool(layer):
        return None if _is_global_avg_pool(layer) else (
            f"global pooling {layer!r} is not a global average pooling: only average pooling can be removed so "
            "that the map's mean equals the logits")
    if _is_noop(layer) or isinstance(layer, nn.Linear):
        return None
    if isinstance(layer, nn.Conv2d):
        ok = layer.kernel_size == (1, 1) and layer.groups == 1 and layer.stride == (1, 1)
        return None if ok else f"{layer!r} is not a 1x1 convolution"
    if isinstance(layer, nn.LayerNorm):
        return None if len(layer.normalized_shape) == 1 else f"{layer!r} normalizes more than the channels"
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return None if layer.track_running_stats else f"{layer!r} has no running statistics"
    return f"{type(layer).__name__} is not affine per location (supported: {SUPPORTED_HEAD_LAYERS})"


def _apply_per_location(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Applies one head layer to channels-last per-location vectors ``y`` ``[B, h, w, C]``."""
    if _is_pool(layer) or _is_noop(layer):
        return y
    if isinstance(layer, nn.Linear):
        return F.linear(y, layer.weight, layer.bias)
    if isinstance(layer, nn.Conv2d):
        return F.linear(y, layer.weight.flatten(1), layer.bias)
    if isinstance(layer, nn.LayerNorm):
        # Statistics of the pooled vector (= spatial mean, since every layer before is affine), so that the
        # mean over locations of the normalized map is exactly the normalized pooled vector.
        yf = y.float()
        pooled = yf.mean(dim=(1, 2))                                          # [B, C]
        mu = pooled.mean(dim=-1)[:, None, None, None]
        var = pooled.var(dim=-1, unbiased=False)[:, None, None, None]
        out = (yf - mu) * torch.rsqrt(var + layer.eps)
        if layer.weight is not None:
            out = out * layer.weight.float()
        if layer.bias is not None:
            out = out + layer.bias.float()
        return out
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        scale = (layer.weight if layer.weight is not None else 1.0) * torch.rsqrt(layer.running_var + layer.eps)
        shift = (layer.bias if layer.bias is not None else 0.0) - layer.running_mean * scale
        return y * scale + shift
    raise AssertionError(f"unvalidated head layer {layer!r}")  # to_dense validates every layer first


def _flatten_head(layers: list[nn.Module]) -> list[nn.Module]:
    out = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            out += _flatten_head(list(layer))
        else:
            out.append(layer)
    return out


def _resnet_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def _regnet_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.trunk_output(m.stem(x))


def _sequential_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.features(x)


def _timm_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.forward_features(x)


def _torchvision_class(name: str):
    import torchvision.models as tvm

    return getattr(tvm, name, None) or type(None)


def _detect(model: nn.Module) -> tuple[str, Callable, nn.Module, list[nn.Module]]:
    """(family, features function, global pooling layer, head layers after the pooling)."""
    name = type(model).__name__
    if isinstance(model, (_torchvision_class("ResNet"), _torchvision_class("RegNet"))):
        features = _resnet_features if isinstance(model, _torchvision_class("ResNet")) else _regnet_features
        return f"torchvision {name} (avgpool + fc)", features, model.avgpool, [model.fc]
    if hasattr(model, "forward_features") and callable(model.forward_features):
        head = getattr(model, "head", None)
        if isinstance(head, nn.Module) and hasattr(head, "global_pool") and hasattr(head, "fc"):
            layers = [child for _, child in head.named_children()]   # registration order == forward order
            pool = head.global_pool
            return f"timm-style {name} (forward_features + {type(head).__name__})", _timm_features, pool, \
                [layer for layer in layers if layer is not pool]
        if hasattr(model, "global_pool") and hasattr(model, "get_classifier"):
            return f"timm-style {name} (forward_features + global_pool + classifier)", _timm_features, \
                model.global_pool, [model.get_classifier()]
    if all(isinstance(getattr(model, a, None), nn.Module) for a in ("features", "avgpool", "classifier")):
        return f"torchvision-style {name} (features + avgpool + classifier)", _sequential_features, \
            model.avgpool, [model.classifier]
    raise ModelError(f"cannot convert {name} to a fully convolutional annotator: expected {EXPECTED_ARCHITECTURES}")


def to_dense(model: nn.Module) -> DenseClassifier:
    """Wraps ``model`` as a :class:`DenseClassifier` (global average pooling removed, head at every location).

    Raises:
        ModelError: an architecture that is not one of the supported families (the message names them),
            a global pooling that is not average pooling, or a head layer that is not affine per location.
    """
    family, features, pool, head = _detect(model)
    if not isinstance(pool, nn.Module):
        raise ModelError(f"cannot convert {family}: its global pooling is {pool!r}, not a pooling layer (token-pooled "
                         f"transformers such as ViTs are not supported); expected {EXPECTED_ARCHITECTURES}")
    layers = _flatten_head(head)
    problems = [_head_problem(pool)] + [_head_problem(layer) for layer in layers]
    problems = [p for p in problems if p]
    if problems:
        raise ModelError(f"cannot convert {family} to a fully convolutional annotator: {problems[0]}")
    if not any(isinstance(layer, (nn.Linear, nn.Conv2d)) for layer in layers):
        raise ModelError(f"cannot convert {family}: its head has no classifier layer (Linear or 1x1 Conv2d); "
                         "was it built with num_classes=0?")
    channels_last = getattr(pool, "input_fmt", "NCHW") == "NHWC"
    return DenseClassifier(model, features, layers, family, channels_last_features=channels_last)


@torch.no_grad()
def check_conversion(model: nn.Module, dense: DenseClassifier, x: torch.Tensor,
                     rtol: float = 1e-3) -> tuple[int, int, int]:
    """Runs the model and its dense version on a probe batch and checks the mean-logit invariant.

    Catches what :func:`to_dense` cannot see statically, e.g. a layer that ``forward_head`` applies between the
    pooling and the classifier without it being part of the recognised head.

    Args:
        model: the original classifier (eval mode).
        dense: ``to_dense(model)``, on the same device.
        x: probe images ``[B, 3, S, S]`` at the annotation size.
        rtol: allowed error relative to ``max(1, max |logit|)``.

    Returns:
        ``(h, w, num_classes)`` of the dense map at this input size.

    Raises:
        ModelError: the dense map fails to compute or its spatial mean differs from the model's logits.
    """
    try:
        maps, logits = _maps_and_logits(model, dense, x)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"{dense.family}: the converted model fails on a {list(x.shape)} probe ({type(e).__name__}: "
                         f"{e}); its head likely holds layers the conversion did not find; expected "
                         f"{EXPECTED_ARCHITECTURES}") from e
    err, scale = float((maps.mean(dim=(1, 2)) - logits).abs().max()), float(logits.abs().max())
    if not err <= rtol * max(1.0, scale):
        raise ModelError(f"{dense.family}: the spatial mean of the dense map differs from the model's logits by "
                         f"{err:.3g} (logit scale {scale:.3g}): the model does something between its features and its "
                         f"classifier that the conversion does not reproduce; expected {EXPECTED_ARCHITECTURES}")
    return int(maps.shape[1]), int(maps.shape[2]), int(maps.shape[3])


def _maps_and_logits(model: nn.Module, dense: DenseClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dense.forward_hwc(x)`` ``[B, h, w, C]`` and ``model(x)`` ``[B, C]``, both float32; checks the shapes."""
    logits = model(x).float()
    if logits.dim() != 2:
        raise ModelError(f"{dense.family}: the model returned shape {list(logits.shape)}; expected logits [B, C]")
    maps = dense.forward_hwc(x)
    if maps.shape[-1] != logits.shape[1]:
        raise ModelError(f"{dense.family}: the dense map has {maps.shape[-1]} classes but the model "
                         f"{logits.shape[1]}: the head was not found correctly; expected {EXPECTED_ARCHITECTURES}")
    return maps, logits


@torch.no_grad()
def mean_logit_error(model: nn.Module, dense: DenseClassifier, x: torch.Tensor) -> tuple[float, float]:
    """Largest |spatial mean of the dense map − the model's own logits| and the largest |logit|, for ``x``.

    The conversion is exact when the error is at float rounding level (relative to the logit scale).
    """
    maps, logits = _maps_and_logits(model, dense, x)
    return float((maps.mean(dim=(1, 2)) - logits).abs().max()), float(logits.abs().max())


__all__ = ["DenseClassifier", "EXPECTED_ARCHITECTURES", "SUPPORTED_HEAD_LAYERS", "check_conversion", "mean_logit_error",
           "to_dense"]
