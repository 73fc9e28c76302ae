"""Fully convolutional conversion (dali_relabel.annotate.dense): the mean-logit invariant per family, per-location
values against references computed from the original model's own pre-pooling features, and errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from annotate_models import TimmStyleNet
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

from dali_relabel.annotate.dense import check_conversion, mean_logit_error, to_dense
from dali_relabel.annotate.models import ModelError, build_model

# timm is an optional extra (in the dev extra; absent on the GPU machine): its cases skip without it.
needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")


def timm_model(name: str, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


# Non-square on purpose: the map must keep rows = image y, columns = image x.
INPUT_HW = (96, 128)
MAP_HW = (3, 4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_torchvision_convnext(num_classes: int = 50) -> nn.Module:
    """torchvision's ConvNeXt class (LayerNorm2d + Flatten + Linear head) at a test-friendly width."""
    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 96, 1),
                     CNBlockConfig(96, None, 1)], num_classes=num_classes)


def calibrated(model: nn.Module) -> nn.Module:
    """Sets BatchNorm running statistics from random images, so random-init logits are O(1), not ~0.

    (Freshly initialised EfficientNets give logits of ~1e-14 in eval mode, which would make any
    comparison at 1e-4 vacuous.)
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None   # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, *INPUT_HW, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def make(spec: str) -> nn.Module:
    torch.manual_seed(0)
    return calibrated(tiny_torchvision_convnext() if spec == "torchvision:convnext(tiny)" else build_model(spec))


FAMILIES = [
    "torchvision:resnet18",
    "torchvision:regnet_y_400mf",
    "torchvision:efficientnet_b0",
    "torchvision:convnext(tiny)",
    pytest.param("timm:resnet10t", marks=needs_timm),
    pytest.param("timm:efficientnet_b0", marks=needs_timm),
    pytest.param("timm:convnext_atto", marks=needs_timm),
    pytest.param("timm:regnetx_002", marks=needs_timm),
]


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *INPUT_HW, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("spec", FAMILIES)
def test_spatial_mean_of_map_equals_model_logits(spec):
    model = make(spec)
    dense = to_dense(model)
    x = images()
    with torch.no_grad():
        logits = model(x)
        maps = dense(x)
    assert maps.shape == (2, logits.shape[1], *MAP_HW)
    assert logits.abs().max() > 0.1                       # not vacuous...
    assert maps.std(dim=(2, 3)).mean() > 0.01             # ...and the map really varies over space
    np.testing.assert_allclose(maps.mean(dim=(2, 3)).numpy(), logits.numpy(), rtol=0, atol=1e-4)
    err, scale = mean_logit_error(model, dense, x)
    assert err <= 1e-4 and scale == pytest.approx(float(logits.abs().max()))
    assert check_conversion(model, dense, x) == (*MAP_HW, logits.shape[1])


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def captured_pre_pool_features(model: nn.Module, pool: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The input of ``pool`` during the model's own forward pass, [B, C, h, w] float64."""
    seen = []
    handle = pool.register_forward_hook(lambda mod, inputs, output: seen.append(inputs[0].detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0].double().numpy()


def test_linear_head_applied_at_every_location():
    model = make("torchvision:resnet18")
    x = images()
    f = captured_pre_pool_features(model, model.avgpool, x)               # [B, 512, 3, 4]
    w, b = as_np(model.fc.weight), as_np(model.fc.bias)
    expected = np.einsum("bchw,kc->bkhw", f, w) + b[None, :, None, None]
    with torch.no_grad():
        got = to_dense(model)(x).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def layer_norm_with_pooled_stats(f: np.ndarray, weight, bias, eps: float) -> np.ndarray:
    """Every location normalized with the mean/variance of the image's pooled feature vector."""
    pooled = f.mean(axis=(2, 3))                                          # [B, C]
    mu, var = pooled.mean(axis=1), pooled.var(axis=1)
    out = (f - mu[:, None, None, None]) / np.sqrt(var + eps)[:, None, None, None]
    return out * weight[None, :, None, None] + bias[None, :, None, None]


@pytest.mark.parametrize("spec", ["torchvision:convnext(tiny)", pytest.param("timm:convnext_atto", marks=needs_timm)])
def test_layer_norm_head_uses_pooled_statistics(spec):
    model = make(spec)
    if spec.startswith("timm"):
        pool, norm, fc = model.head.global_pool, model.head.norm, model.head.fc
    else:
        pool, norm, fc = model.avgpool, model.classifier[0], model.classifier[2]
    x = images()
    f = captured_pre_pool_features(model, pool, x)
    normed = layer_norm_with_pooled_stats(f, as_np(norm.weight), as_np(norm.bias), norm.eps)
    expected = np.einsum("bchw,kc->bkhw", normed, as_np(fc.weight)) + as_np(fc.bias)[None, :, None, None]
    with torch.no_grad():
        got = to_dense(model)(x).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


class VggLike(nn.Module):
    """features + avgpool + classifier, but the pooling keeps a 2×2 grid (like VGG's 7×7)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, stride=8)
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(16, 10)


@pytest.mark.parametrize("make_model,message", [
    (lambda: build_model("torchvision:mobilenet_v3_small"), "Hardswish is not affine per location"),
    pytest.param(lambda: timm_model("convnext_atto", head_hidden_size=16), "GELU is not affine per location",
                 marks=needs_timm),
    pytest.param(lambda: timm_model("resnet10t", global_pool="max"), "is not a global average pooling",
                 marks=needs_timm),
    (VggLike, "is not a global average pooling"),
    pytest.param(lambda: timm_model("vit_tiny_patch16_224"), "token-pooled transformers such as ViTs are not supported",
                 marks=needs_timm),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)),
     "cannot convert Sequential to a fully convolutional annotator: expected torchvision ResNet/RegNet"),
    pytest.param(lambda: timm_model("resnet10t", num_classes=0), "its head has no classifier layer", marks=needs_timm),
])
def test_unsupported_architectures_are_refused_with_what_was_expected(make_model, message):
    with pytest.raises(ModelError, match=message):
        to_dense(make_model())


def test_conversion_check_catches_a_head_layer_it_cannot_see():
    model = TimmStyleNet(head_scale=1.0).eval()
    x = images(1)
    assert check_conversion(model, to_dense(model), x) == (INPUT_HW[0] // 8, INPUT_HW[1] // 8, 10)
    scaled = TimmStyleNet(head_scale=2.0).eval()   # forward_head scales the logits: invisible to to_dense
    with pytest.raises(ModelError, match="spatial mean of the dense map differs from the model's logits"):
        check_conversion(scaled, to_dense(scaled), x)


@needs_timm
def test_conversion_check_catches_timm_mobilenetv3_conv_head():
    mnv3 = build_model("timm:mobilenetv3_small_050").eval()   # conv_head between pooling and classifier
    with pytest.raises(ModelError, match="its head likely holds layers the conversion did not find"):
        check_conversion(mnv3, to_dense(mnv3), images(1))
