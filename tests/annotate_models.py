"""Model factories for the annotator tests (given as ``annotate_models:<factory>`` model specs)."""

from __future__ import annotations

import os
import time

import torch
import torchvision
from torch import nn

# Seconds the slow model sleeps per forward pass, read at every call: the test that kills a run sets it in
# the child's environment only, so the same model spec runs at full speed in the reference run.
SLEEP_ENV = "DALI_RELABEL_TEST_MODEL_SLEEP_S"


class _Sleep(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
        return x


def slow_resnet18(**kwargs) -> nn.Module:
    """torchvision resnet18 (default init) whose first layer sleeps $DALI_RELABEL_TEST_MODEL_SLEEP_S seconds."""
    model = torchvision.models.resnet18(weights=None, **kwargs)
    model.layer1 = nn.Sequential(_Sleep(), model.layer1)
    return model


class TimmStyleNet(nn.Module):
    """A minimal model following the timm protocol (forward_features + global_pool + get_classifier).

    ``head_scale`` multiplies the logits inside forward_head: a layer the conversion cannot see, which
    the conversion check must catch.
    """

    def __init__(self, num_classes: int = 10, head_scale: float = 1.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2,
                                                                                                  padding=1))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)
        self.head_scale = head_scale

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x) * self.head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def timm_style_net(**kwargs) -> nn.Module:
    return TimmStyleNet(**kwargs)


def not_a_module(**kwargs):
    return "not a module"
