"""Model specs and local weights for the annotator (dali_relabel.annotate.models): loading, hashing, errors."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from dali_relabel.annotate.models import (
    IMAGENET_MEAN,
    ModelError,
    build_model,
    file_sha256,
    load_model,
    model_normalization,
)

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def trained_like():
    """A resnet18 whose weights differ from the seeded random init (as real weights would)."""
    torch.manual_seed(123)
    return build_model("torchvision:resnet18").eval()


@pytest.mark.parametrize("layout", ["state_dict", "checkpoint_state_dict", "checkpoint_model_ddp", "safetensors"])
def test_weights_load_from_local_files(tmp_path, trained_like, layout):
    sd = trained_like.state_dict()
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        obj = {"state_dict": sd, "epoch": 3} if layout == "checkpoint_state_dict" else \
            {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}} if layout == "checkpoint_model_ddp" \
            else sd
        torch.save(obj, path)
    loaded = load_model("torchvision:resnet18", weights=path)
    assert_same_weights(loaded.module, trained_like)
    assert not loaded.module.training
    assert loaded.weights == path.name and loaded.weights_sha256 == file_sha256(path) and not loaded.random_init
    assert loaded.mean == IMAGENET_MEAN


def test_missing_weights_say_how_to_pass_them():
    with pytest.raises(ModelError, match=r"needs weights: a local state dict or checkpoint file .*never "
                                         r"downloaded.*random_init"):
        load_model("torchvision:resnet18")


def test_weights_errors_name_the_file_and_the_problem(tmp_path, trained_like):
    with pytest.raises(ModelError, match=r"weights file .*nope\.pth does not exist"):
        load_model("torchvision:resnet18", weights=tmp_path / "nope.pth")
    torch.save(trained_like.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ModelError, match=r"r18\.pth does not fit torchvision:resnet34: missing keys layer1\.2\."):
        load_model("torchvision:resnet34", weights=tmp_path / "r18.pth")
    with pytest.raises(ModelError, match=r"r18\.pth does not fit torchvision:resnet18.*size mismatch for fc\.weight"):
        load_model("torchvision:resnet18", weights=tmp_path / "r18.pth", num_classes=10)
    torch.save({"epoch": 1}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"bad\.pth holds no state dict"):
        load_model("torchvision:resnet18", weights=tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"either weights or random initialisation \(random_init\)"):
        load_model("torchvision:resnet18", weights=tmp_path / "r18.pth", random_init=True)


def test_random_init_is_seeded_and_hashed():
    a = load_model("torchvision:resnet18", random_init=True)
    b = load_model("torchvision:resnet18", random_init=True)
    assert_same_weights(a.module, b.module)   # every rank and every resumed run builds the same model
    assert a.weights_sha256 == b.weights_sha256 and a.random_init and a.weights is None
    assert load_model("torchvision:resnet18", random_init=True, num_classes=10).weights_sha256 != a.weights_sha256


@pytest.mark.parametrize("spec,message", [
    ("resnet18", "is not of the form torchvision:<name>, timm:<name> or module.path:factory"),
    ("torchvision:no_such_net", "torchvision has no model 'no_such_net'"),
    pytest.param("timm:no_such_net", "timm has no model 'no_such_net'", marks=needs_timm),
    ("no_such_module_xyz:factory", "cannot import the model factory 'no_such_module_xyz:factory'"),
    ("annotate_models:not_a_module", "returned str, not a torch.nn.Module"),
])
def test_bad_model_specs(spec, message):
    with pytest.raises(ModelError, match=message):
        build_model(spec)


def test_factory_spec_and_default_normalization():
    model = build_model("annotate_models:timm_style_net", num_classes=7)
    assert model.fc.out_features == 7
    assert model_normalization(model) == (IMAGENET_MEAN, (0.229, 0.224, 0.225))


@needs_timm
def test_timm_normalization_comes_from_its_config():
    vit = build_model("timm:vit_tiny_patch16_224")   # its pretrained config says mean = std = 0.5
    assert model_normalization(vit) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_timm_spec_without_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)   # import timm now raises ImportError
    with pytest.raises(ModelError, match=r"needs timm: pip install 'dali_relabel\[timm\]'"):
        build_model("timm:resnet18")
