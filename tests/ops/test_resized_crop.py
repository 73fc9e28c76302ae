"""fn.relabel.resized_crop: equal to torchvision's transforms on PIL images bit for bit; shapes, layouts, errors."""

from __future__ import annotations

import functools

import numpy as np
import PIL
import pytest
import torch
from crop_reference import torchvision_crop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD
from dali_relabel.testing.demo_dataset import build_demo_dataset

INTERP = {"bilinear": types.INTERP_LINEAR, "triangular": types.INTERP_TRIANGULAR, "bicubic": types.INTERP_CUBIC,
          "lanczos": types.INTERP_LANCZOS3, "nearest": types.INTERP_NN}
DTYPES = {"float32": types.FLOAT, "float16": types.FLOAT16, "uint8": types.UINT8}
# Pillow 13 chose the pass order by shape (vertical first for tall downscales); before, always horizontal
# first, which differs by 1 in some pixels. The pinned Pillow is 13.
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


@functools.cache
def runner(size: tuple[int, int], interp: str, dtype: str, layout: str = "CHW", windows: bool = True,
           mirrors: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD, simd: bool = True):
    """A pipeline fed (images, anchors, shapes, mirrors) per call, returning the op's output."""

    @pipeline_def(batch_size=8, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                  exec_pipelined=False)
    def pipe():
        image = fn.external_source(name="image", layout="HWC")
        args = {}
        if windows:
            args.update(anchor=fn.external_source(name="anchor"), shape=fn.external_source(name="shape"))
        if mirrors:
            args["mirror"] = fn.external_source(name="mirror")
        return fn.relabel.resized_crop(image, size=list(size), interp_type=INTERP[interp], dtype=DTYPES[dtype],
                                       mean=list(mean), std=list(std), output_layout=layout, simd=simd, **args)

    p = pipe()
    p.build()

    def run(images, anchors=None, shapes=None, mirrors_=None):
        p.feed_input("image", [np.ascontiguousarray(i) for i in images])
        if windows:
            p.feed_input("anchor", [np.asarray(a, np.int32) for a in anchors])
            p.feed_input("shape", [np.asarray(s, np.int32) for s in shapes])
        if mirrors:
            p.feed_input("mirror", [np.asarray(m, np.int32) for m in mirrors_])
        (out,) = p.run()
        return [np.array(out[i]) for i in range(len(out))], out.layout()

    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos (the demo's JPEGs, decoded by PIL), 150x200 RGB."""
    demo = build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=8, height=150, width=200, progress=False)
    return [np.asarray(Image.open(demo.images / key).convert("RGB")) for key in sorted(demo.objects)]


def random_windows(rng, height, width, count):
    anchors, shapes = [], []
    for _ in range(count):
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        anchors.append((int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))))
        shapes.append((h, w))
    return np.array(anchors), np.array(shapes)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "lanczos", "nearest"])
def test_equals_torchvision_bit_for_bit(photos, interp, dtype, layout):
    """n = 3 crops per photo, random windows (upscaled and downscaled, any aspect) and flips: each crop is
    torchvision's resized_crop + hflip + to_tensor + normalize of the same PIL image (float16: that, .half())."""
    rng = np.random.default_rng(hash((interp, dtype, layout)) % 2**32)
    size = (48, 40)
    windows = [random_windows(rng, 150, 200, 3) for _ in photos]
    mirrors = [rng.integers(0, 2, 3) for _ in photos]
    out, out_layout = runner(size, interp, dtype, layout)(photos, [a for a, _ in windows], [s for _, s in windows],
                                                          mirrors)
    assert out_layout == "F" + layout
    for img, (anchors, shapes), flips, got in zip(photos, windows, mirrors, out):
        assert got.shape == ((3, 3, *size) if layout == "CHW" else (3, *size, 3))
        for k in range(3):
            ref = torchvision_crop(Image.fromarray(img), (*anchors[k], *shapes[k]), bool(flips[k]), size,
                                   interpolation=interp, normalize=dtype != "uint8")
            if dtype == "float16":
                ref = ref.half()
            ref = ref.numpy()
            if layout == ("HWC" if dtype != "uint8" else "CHW"):
                ref = ref.transpose(1, 2, 0) if dtype != "uint8" else ref.transpose(2, 0, 1)
            if PILLOW_13:
                np.testing.assert_array_equal(got[k], ref, err_msg=f"crop {k}, window {anchors[k]} {shapes[k]}")
            else:
                np.testing.assert_allclose(got[k].astype(np.float64), ref.astype(np.float64), atol=1 / 255 / 0.2 + 1)


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_portable_loops_equal_the_avx2_pass(photos, interp):
    """simd=False runs the portable horizontal loops (what a CPU without AVX2, e.g. an ARM node, runs) where the
    AVX2 pass would run (3 channels, <= 5 taps: upscales and mild downscales): the same crops as simd=True, and
    both torchvision's bit for bit."""
    rng = np.random.default_rng(7)
    size = (40, 40)
    anchors, shapes = [], []
    widest = 80 if interp == "bilinear" else 40     # -> 40 px: at most 5 horizontal taps (the AVX2 pass's range)
    for _ in photos:
        h, w = rng.integers(16, 81, 3), rng.integers(16, widest + 1, 3)
        anchors.append(np.stack([rng.integers(0, 150 - h + 1), rng.integers(0, 200 - w + 1)], 1))
        shapes.append(np.stack([h, w], 1))
    mirrors = [rng.integers(0, 2, 3) for _ in photos]
    fast, _ = runner(size, interp, "uint8", "HWC")(photos, anchors, shapes, mirrors)
    portable, _ = runner(size, interp, "uint8", "HWC", simd=False)(photos, anchors, shapes, mirrors)
    for img, a, sh, flips, got_fast, got_portable in zip(photos, anchors, shapes, mirrors, fast, portable):
        np.testing.assert_array_equal(got_portable, got_fast)
        for k in range(3):
            ref = torchvision_crop(Image.fromarray(img), (*a[k], *sh[k]), bool(flips[k]), size, interpolation=interp,
                                   normalize=False).numpy()
            if PILLOW_13:
                np.testing.assert_array_equal(got_portable[k], ref)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_window_and_size_equals_pillow(data):
    """Property: any window of any image (1 or 3 channels, noise: every rounding shows) resized to any size
    is PIL's ``crop(...).resize(...)`` exactly."""
    size = data.draw(st.sampled_from([(1, 1), (1, 9), (9, 1), (17, 23), (64, 64), (40, 96)]), label="size")
    interp = data.draw(st.sampled_from(["bilinear", "bicubic", "lanczos", "nearest"]), label="interp")
    channels = data.draw(st.sampled_from([1, 3]), label="channels")
    seed = data.draw(st.integers(0, 2**31), label="seed")
    rng = np.random.default_rng(seed)
    images, anchors, shapes = [], [], []
    for _ in range(3):
        h, w = int(rng.integers(1, 130)), int(rng.integers(1, 130))
        images.append(rng.integers(0, 256, (h, w, channels), dtype=np.uint8))
        a, s = random_windows(rng, h, w, 2)
        anchors.append(a), shapes.append(s)
    out, _ = runner(size, interp, "uint8", "HWC", mirrors=False)(images, anchors, shapes)
    for img, a, s, got in zip(images, anchors, shapes, out):
        pil = Image.fromarray(img[..., 0] if channels == 1 else img)
        for k in range(2):
            (y, x), (h, w) = a[k], s[k]
            ref = np.asarray(pil.crop((x, y, x + w, y + h)).resize((size[1], size[0]), INTERP_PIL[interp]))
            ref = ref.reshape(*size, channels)
            if PILLOW_13:
                np.testing.assert_array_equal(got[k], ref, err_msg=f"{interp} window {a[k]} {s[k]} -> {size}")
            else:
                assert np.abs(got[k].astype(int) - ref).max() <= 1


INTERP_PIL = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS,
              "nearest": Image.NEAREST}


def test_a_tall_downscale_runs_the_vertical_pass_first():
    """The case that told the pass orders apart (Pillow >= 13 goes vertical first when the height shrinks
    by more than twice as many pixels as the width): a 201x47 window to 32x32."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 480, 3), dtype=np.uint8)
    out, _ = runner((32, 32), "bilinear", "uint8", "HWC", mirrors=False)([img], [[(20, 400)]], [[(201, 47)]])
    ref = np.asarray(Image.fromarray(img).crop((400, 20, 447, 221)).resize((32, 32), Image.BILINEAR))
    if PILLOW_13:
        np.testing.assert_array_equal(out[0][0], ref)


def test_one_crop_and_the_whole_image(photos):
    """[2] windows give [C, H, W] per sample; no windows crop the whole image; triangular is bilinear."""
    img = photos[0]
    one, layout = runner((32, 32), "triangular", "float32", windows=True)([img], [(10, 20)], [(100, 90)], [1])
    assert one[0].shape == (3, 32, 32) and layout == "CHW"
    ref = torchvision_crop(Image.fromarray(img), (10, 20, 100, 90), True, 32).numpy()
    np.testing.assert_array_equal(one[0], ref)
    whole, _ = runner((32, 32), "bilinear", "float32", windows=False)([img], mirrors_=[0])
    np.testing.assert_array_equal(whole[0], torchvision_crop(Image.fromarray(img), (0, 0, 150, 200), False, 32).numpy())


def test_literal_arguments(photos):
    """Windows and flips given as constants (not pipeline nodes)."""

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        image = fn.external_source(name="image", layout="HWC")
        return fn.relabel.resized_crop(image, anchor=[5, 6], shape=[70, 80], mirror=1, size=24, dtype=types.UINT8,
                                       output_layout="HWC")

    p = pipe()
    p.build()
    p.feed_input("image", photos[:2])
    (out,) = p.run()
    for i in range(2):
        ref = torchvision_crop(Image.fromarray(photos[i]), (5, 6, 70, 80), True, 24, normalize=False).numpy()
        np.testing.assert_array_equal(np.array(out[i]), ref)


def test_mean_and_std_per_channel_or_one(photos):
    out, _ = runner((16, 16), "bilinear", "float32", mean=(0.5,), std=(0.25,))([photos[1]], [[(0, 0)]],
                                                                                [[(150, 200)]], [[0]])
    ref = torchvision_crop(Image.fromarray(photos[1]), (0, 0, 150, 200), False, 16, mean=(0.5,) * 3, std=(0.25,) * 3)
    np.testing.assert_array_equal(out[0][0], ref.numpy())


I32 = np.int32
BAD_CASES = {   # name: (windows: (anchors, shapes) per sample or None, mirrors or None, op args, message)
    "window leaves the image": (([[(0, 0)], [(100, 0)]], [[(5, 5)], [(60, 10)]]), None, {},
                                r"sample 1, crop 0: window \(y=100, x=0, h=60, w=10\) is empty or leaves the "
                                r"150x200 image"),
    "empty window": (([[(0, 0)]], [[(0, 10)]]), None, {}, r"sample 0, crop 0: window .* is empty"),
    "anchor and shape differ": (([[(0, 0)]], [(5, 5)]), None, {},
                                r"sample 0: anchor \[1, 2\] and shape \[2\] must both be \[2\]"),
    "mirror count": (([[(0, 0)]], [[(5, 5)]]), [[0, 1]], {}, r"sample 0: mirror has shape \[2\] for 1 crop\(s\)"),
    "float windows": (([np.zeros((1, 2), np.float32)], [np.ones((1, 2), np.float32)]), None, {},
                      "anchor must be int32"),
    "int64 mirror": (([[(0, 0)]], [[(5, 5)]]), [np.zeros(1, np.int64)], {}, "mirror must be int32"),
    "dtype": (None, None, dict(dtype=types.INT32), "dtype must be UINT8 .*, FLOAT or FLOAT16"),
    "layout": (None, None, dict(output_layout="CWH"), "output_layout must be 'CHW' or 'HWC'"),
    "mean per channel": (None, None, dict(dtype=types.FLOAT, mean=[0.1, 0.2]),
                         "sample 0: mean and std give 2 and 1 values for an image with 3 channels"),
    "size": (None, None, dict(size=[2, 3, 4]), "size must be one positive int or a pair"),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_named(photos, name):
    windows, mirrors, op_args, message = BAD_CASES[name]
    n = len(windows[0]) if windows else 1
    op_args = {"size": 8, **op_args}

    @pipeline_def(batch_size=n, num_threads=1, device_id=None)
    def pipe():
        args = dict(op_args)
        if windows:
            args.update(anchor=fn.external_source(name="anchor"), shape=fn.external_source(name="shape"))
        if mirrors:
            args["mirror"] = fn.external_source(name="mirror")
        return fn.relabel.resized_crop(fn.external_source(name="image", layout="HWC"), **args)

    with pytest.raises(ValueError, match=r"relabel\.resized_crop: " + message):
        p = pipe()
        p.build()
        p.feed_input("image", photos[:n])
        if windows:
            p.feed_input("anchor", [np.asarray(a, I32) if np.asarray(a).dtype.kind == "i" else np.asarray(a)
                                    for a in windows[0]])
            p.feed_input("shape", [np.asarray(a, I32) if np.asarray(a).dtype.kind == "i" else np.asarray(a)
                                   for a in windows[1]])
        if mirrors:
            p.feed_input("mirror", [m if isinstance(m, np.ndarray) else np.asarray(m, I32) for m in mirrors])
        p.run()


def test_anchor_without_shape_is_refused(photos):
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.relabel.resized_crop(fn.external_source(name="image", layout="HWC"), anchor=[0, 0], size=8)

    with pytest.raises(ValueError, match=r"relabel\.resized_crop: give anchor and shape together"):
        p = pipe()
        p.build()
        p.feed_input("image", photos[:1])
        p.run()
