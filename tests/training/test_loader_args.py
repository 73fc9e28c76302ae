"""Every loader argument means what it says or is refused at construction, by name, with its valid range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loader_util import device, on_cpu, small_demo, train_loader  # noqa: F401 (fixtures)

import dali_relabel.loader.base as loader_base
from dali_relabel import AugmentConfig, EvalConfig, ReLabelLoader, ReLabelValLoader, TargetConfig

pytestmark = pytest.mark.filterwarnings("ignore:1 class folders hold no images")

BAD = [  # (keyword, value, exception, message)
    ("batch_size", 0, ValueError, r"batch_size must be an integer >= 1, got 0"),
    ("batch_size", -3, ValueError, r"batch_size must be an integer >= 1, got -3"),
    ("batch_size", 2.5, TypeError, r"batch_size must be an integer >= 1, got 2.5 \(float\)"),
    ("batch_size", "8", TypeError, r"batch_size must be an integer >= 1, got '8' \(str\)"),
    ("batch_size", True, TypeError, r"batch_size must be an integer >= 1, got True"),
    ("crop_size", -5, ValueError, r"crop_size must be an integer >= 1, got -5"),
    ("crop_size", 0, ValueError, r"crop_size must be an integer >= 1, got 0"),
    ("crop_size", 22.5, TypeError, r"crop_size must be an integer >= 1, got 22.5"),
    ("area", (0, 0), ValueError, r"area must be a pair \(min, max\) with 0 < min <= max <= 1, got \(0, 0\)"),
    ("area", (0.5, 0.2), ValueError, r"area must be a pair \(min, max\) with 0 < min <= max <= 1"),
    ("area", (0.1, 1.5), ValueError, r"area must be a pair \(min, max\) with 0 < min <= max <= 1"),
    ("area", 0.5, ValueError, r"area must be a pair \(min, max\)"),
    ("aspect", (-1, 2), ValueError, r"aspect must be a pair \(min, max\) with 0 < min <= max, got \(-1, 2\)"),
    ("aspect", (0, 0), ValueError, r"aspect must be a pair \(min, max\) with 0 < min <= max"),
    ("aspect", (2, 1), ValueError, r"aspect must be a pair \(min, max\) with 0 < min <= max"),
    ("flip_prob", 2, ValueError, r"flip_prob must be in \[0, 1\], got 2.0"),
    ("flip_prob", -0.1, ValueError, r"flip_prob must be in \[0, 1\], got -0.1"),
    ("flip_prob", float("nan"), TypeError, r"flip_prob must be a finite number \[0, 1\], got nan"),
    ("dtype", "uint8", ValueError, r"dtype must be one of float32, float16, bfloat16 .*got 'uint8'"),
    ("dtype", "garbage", ValueError, r"dtype must be one of float32, float16, bfloat16 .*got 'garbage'"),
    ("dtype", torch.int32, ValueError, r"dtype must be one of float32, float16, bfloat16 .*got torch.int32"),
    ("memory_format", "nhwc", ValueError, r"memory_format must be torch.contiguous_format or torch.channels_last"),
    ("memory_format", torch.preserve_format, ValueError, r"memory_format must be torch.contiguous_format"),
    ("interpolation", "cubicle", ValueError, r"interpolation must be one of 'bilinear', 'bicubic', 'nearest'"),
    ("mean", (0.5, 0.5), ValueError, r"mean must hold 1 or 3 values \(R, G, B\), got 2"),
    ("std", (0.2, 0.0, 0.2), ValueError, r"std must be > 0 in every channel"),
    ("temperature", 0, ValueError, r"temperature must be in \(0, inf\), got 0.0"),
    ("label_type", "soft", ValueError, r"label_type must be one of 'localized_multi', 'localized_single'"),
    ("bank_memory", "disk", ValueError, r"bank_memory must be one of 'device', 'host', got 'disk'"),
    ("transpose_box", 1, TypeError, r"transpose_box must be True or False, got 1"),
    ("device", "tpu", ValueError, r"device must be one of 'auto', 'gpu', 'cpu', got 'tpu'"),
    ("last_batch", "keep", ValueError, r"last_batch must be one of 'partial', 'fill', 'drop', got 'keep'"),
    ("missing", "skip", ValueError, r"missing must be one of 'error', 'onehot', got 'skip'"),
    ("outputs", ("pixels",), ValueError, r"unknown outputs \['pixels'\]; outputs must be a non-empty sequence of "
                                         r"names from \('images', 'targets', 'labels', 'boxes', 'rows'"),
    ("outputs", (), ValueError, r"unknown outputs \[\]; outputs must be a non-empty sequence"),
    ("seed", -1, ValueError, r"seed must be an integer in \[0, 9223372036854775807\], got -1"),
    ("seed", 1.5, TypeError, r"seed must be an integer in \[0, 9223372036854775807\], got 1.5"),
    ("shuffle", "yes", TypeError, r"shuffle must be True or False, got 'yes'"),
    ("num_threads", 0, ValueError, r"num_threads must be an integer >= 1, got 0"),
    ("prefetch", 0, ValueError, r"prefetch must be an integer >= 1, got 0"),
    ("num_shards", 0, ValueError, r"num_shards must be an integer >= 1, got 0"),
    ("num_classes", 0, ValueError, r"num_classes must be an integer >= 1, got 0"),
    ("crop", 224, TypeError, r"ReLabelLoader got an unexpected keyword argument 'crop'; settings accepted by "
                             r"keyword: area, aspect, auto_augment, bank_memory, blur_prob, color_jitter, "
                             r"color_jitter_prob, crop_size"),
]


@pytest.mark.parametrize("name,value,error,message", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_each_bad_argument_is_refused_by_name(small_demo, name, value, error, message):
    kwargs = {"batch_size": 4, "device": "cpu", name: value}
    batch_size = kwargs.pop("batch_size")
    with pytest.raises(error, match=message):
        ReLabelLoader(small_demo.images, small_demo.labels, batch_size, **kwargs)


def test_shard_id_must_be_below_num_shards(small_demo):
    with pytest.raises(ValueError, match=r"shard_id must be an integer in \[0, 2\], got 3"):
        ReLabelLoader(small_demo.images, small_demo.labels, 4, device="cpu", shard_id=3, num_shards=3, seed=0)
    with pytest.raises(ValueError, match=r"with num_shards > 1 and no torch.distributed process group, pass seed="):
        ReLabelLoader(small_demo.images, small_demo.labels, 4, device="cpu", shard_id=0, num_shards=2)
    with pytest.raises(ValueError, match=r"last_batch='drop' with 24 images, batch_size=16 and 2 ranks leaves no "
                                         r"full batch"):
        train_loader(small_demo, batch_size=16, num_shards=2, shard_id=0, last_batch="drop")


def test_configs_validate_themselves():
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\], got 1.2"):
        EvalConfig(crop_pct=1.2)
    with pytest.raises(ValueError, match=r"area must be a pair"):
        AugmentConfig(crop_size=64).replace(area=(0.9, 0.1))
    assert EvalConfig(crop_size=224, crop_pct=0.875).resize_size == 256
    assert EvalConfig(crop_size=56, crop_pct=56 / 64).resize_size == 64
    assert EvalConfig(crop_size=224, crop_pct=0.9).resize_size == 248     # timm: floor(224 / 0.9)
    config = AugmentConfig(dtype=torch.half, memory_format=torch.channels_last, mean=(123.675, 116.28, 103.53),
                           std=(58.395, 57.12, 57.375))
    assert config.dtype == "float16" and config.memory_format == "channels_last"
    np.testing.assert_allclose(config.mean, (0.485, 0.456, 0.406)) and np.testing.assert_allclose(
        config.std, (0.229, 0.224, 0.225))
    with pytest.raises(AttributeError):
        config.crop_size = 3     # frozen
    with pytest.raises(TypeError, match="ReLabelValLoader got an unexpected keyword argument 'flip_prob'"):
        ReLabelValLoader("x", None, 4, flip_prob=0.5)   # no flips in evaluation: refused, not ignored


@pytest.mark.parametrize("dtype,expected", [("float32", torch.float32), ("float16", torch.float16),
                                            ("half", torch.float16), (torch.float16, torch.float16),
                                            ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16)])
def test_dtype_changes_the_images(small_demo, device, dtype, expected):
    reference = on_cpu(next(iter(train_loader(small_demo, device, outputs=("images", "boxes")))))
    images, boxes = on_cpu(next(iter(train_loader(small_demo, device, dtype=dtype, outputs=("images", "boxes")))))
    assert images.dtype == expected and images.shape == reference[0].shape
    assert torch.equal(boxes, reference[1])
    # The same pixels, rounded once to the dtype (bfloat16: one cast of the float32 batch).
    tol = {torch.float32: 0, torch.float16: 2e-3, torch.bfloat16: 1e-2}[expected]
    torch.testing.assert_close(images.float(), reference[0], atol=tol * 3, rtol=tol)
    if expected == torch.bfloat16:
        assert torch.equal(images, reference[0].to(torch.bfloat16))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_channels_last(small_demo, device, dtype):
    contiguous = on_cpu(next(iter(train_loader(small_demo, device, dtype=dtype))))[0]
    images = next(iter(train_loader(small_demo, device, dtype=dtype, memory_format=torch.channels_last)))[0]
    assert images.shape == contiguous.shape and images.dtype == contiguous.dtype
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    assert torch.equal(images.cpu(), contiguous)


def test_mean_std_on_either_scale_and_interpolation(small_demo, device):
    def first(**kw):
        return on_cpu(next(iter(train_loader(small_demo, device, outputs=("images",), **kw))))[0]

    default = first()
    torch.testing.assert_close(first(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)), default)
    raw = first(mean=0.0, std=1.0)          # no normalization: pixels / 255
    torch.testing.assert_close(raw, default * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
                               + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), atol=1e-5, rtol=0)
    # The crops are downscaled: nearest-neighbour keeps the fine texture (aliasing) that the antialiased bilinear
    # filter smooths away, so its total variation is clearly larger; bicubic differs from both.
    def variation(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()

    nearest = first(interpolation="nearest")
    assert variation(nearest) > 1.2 * variation(default)
    assert not torch.equal(first(interpolation="bicubic"), default)


def test_device_auto_is_said_once(small_demo, monkeypatch, capfd):
    monkeypatch.setattr(loader_base, "_announced_devices", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a = train_loader(small_demo, device="auto")
    b = train_loader(small_demo, device="auto")
    assert a.device == b.device == "cpu"
    err = capfd.readouterr().err
    assert err.count("ReLabelLoader(device='auto') runs on the CPU (no CUDA device is visible)") == 1
    with pytest.raises(RuntimeError, match=r"ReLabelLoader\(device='gpu'\) needs CUDA; no GPU is visible"):
        train_loader(small_demo, device="gpu")


def test_old_names_still_work_with_a_deprecation_warning(small_demo):
    new = train_loader(small_demo, transpose_box=True, outputs=("targets", "rows"))
    with pytest.warns(DeprecationWarning) as record:
        old = ReLabelLoader(small_demo.images, labels=small_demo.labels, batch_size=5, device="cpu", crop_size=32,
                            num_threads=2, seed=3, official_axes=True, outputs=("targets", "indices"))
    messages = [str(w.message) for w in record if w.category is DeprecationWarning]
    assert any("labels= is deprecated, use store=" in m for m in messages)
    assert any("official_axes= is deprecated, use transpose_box=" in m for m in messages)
    assert any("the 'indices' output is now called 'rows'" in m for m in messages)
    assert old.target_config == TargetConfig(transpose_box=True) and old.outputs == ("targets", "rows")
    with pytest.warns(DeprecationWarning, match="official_axes is deprecated"):
        assert old.official_axes is True
    a, b = on_cpu(next(iter(new))), on_cpu(next(iter(old)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_graph_errors_surface_at_construction(small_demo, monkeypatch):
    """The first epoch's pipeline is only built on the first next(), but its graph is defined by the constructor:
    e.g. GPU label ops from a plugin built without CUDA fail there, with the plugin's message."""
    from nvidia.dali import fn

    import dali_relabel

    dali_relabel.load_plugin()
    lookup = fn.relabel.lookup

    def no_cuda_lookup(*args, **kwargs):
        if kwargs.get("device") == "gpu":
            raise RuntimeError("the dali_relabel plugin was built without its CUDA backend")
        return lookup(*args, **kwargs)

    monkeypatch.setattr(fn.relabel, "lookup", no_cuda_lookup)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="built without its CUDA backend"):
        ReLabelLoader(small_demo.images, small_demo.labels, 4, device="gpu", device_id=0, seed=0)
