"""relabel_train_pipeline with crops_per_image = n: n crops of each decoded image, each with its own box, flip and
target; crop 0 is the single-crop pipeline's crop; both resamplers; settings checked."""

from __future__ import annotations

import numpy as np
import pytest
from crop_reference import pixel_window, torchvision_crop
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.config import AugmentConfig, TargetConfig
from dali_relabel.pipelines import FileReader, relabel_train_pipeline
from dali_relabel.testing.demo_dataset import build_demo_dataset

NAMES = ("images", "targets", "labels", "boxes", "rows", "mirror")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    demo = build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=8, height=150, width=200, progress=False)
    store = LabelStore.open(str(demo.labels))
    bank = store.materialize(cache_dir=tmp_path_factory.mktemp("bank"), progress=False)
    listing = tmp_path_factory.mktemp("list") / "rows.txt"
    listing.write_text("".join(f"{k} {i}\n" for i, k in enumerate(store.keys.tolist())))
    return demo, store, bank, str(listing)


def run(served, seed=1, target_config=None, **augment):
    demo, _, bank, listing = served
    pipe = relabel_train_pipeline(batch_size=8, num_threads=2, device_id=None, seed=seed, device="cpu",
                                  reader=FileReader(str(demo.images), file_list=listing), bank=bank,
                                  augment=AugmentConfig(**{"crop_size": 40, **augment}),
                                  target_config=target_config or TargetConfig(), outputs=NAMES, augment_seed=seed)
    pipe.build()
    return dict(zip(NAMES, [np.stack([np.array(t[i]) for i in range(len(t))]) for t in pipe.run()]))


def test_n_crops_per_image_with_their_own_boxes_flips_targets_and_pixels(served):
    demo, store, _, _ = served
    out = run(served, crops_per_image=4)
    assert out["images"].shape == (8, 4, 3, 40, 40) and out["targets"].shape == (8, 4, store.num_classes)
    assert out["boxes"].shape == (8, 4, 4) and out["mirror"].shape == (8, 4)
    assert out["labels"].shape == (8,) and out["rows"].shape == (8,)
    for i, row in enumerate(out["rows"].tolist()):
        scores, classes = store.read(row)
        assert out["labels"][i] == store.labels[row]
        image = Image.open(demo.images / store.keys[row]).convert("RGB")
        windows = {pixel_window(b, image.height, image.width) for b in out["boxes"][i]}
        assert len(windows) == 4                                                    # distinct crops
        for k in range(4):
            box = out["boxes"][i, k]
            np.testing.assert_allclose(out["targets"][i, k], slow_label_pool(scores, classes, box[:2], box[2:],
                                                                             store.num_classes), rtol=1e-5, atol=1e-6)
            ref = torchvision_crop(image, pixel_window(box, image.height, image.width), bool(out["mirror"][i, k]), 40)
            np.testing.assert_array_equal(out["images"][i, k], ref.numpy())
    assert set(out["mirror"].ravel().tolist()) == {0, 1}


def test_crop_0_is_the_single_crop_pipelines_crop(served):
    """Crop 0's window and flip streams are the single-crop pipeline's: same box, flip, target and pixels (the
    window decoded alone equals the window of the whole decoded image)."""
    one, four = run(served, seed=5), run(served, seed=5, crops_per_image=4)
    for name in ("images", "targets", "boxes", "mirror"):
        np.testing.assert_array_equal(four[name][:, 0], one[name], err_msg=name)
    np.testing.assert_array_equal(four["labels"], one["labels"])
    assert not np.array_equal(four["boxes"][:, 1], one["boxes"])


def test_dali_resampler_makes_the_same_crops_with_dalis_resize(served):
    """resampler="dali" (the GPU formulation: fn.resize over each crop's region, flips by a reversed x range,
    one crop_mirror_normalize) on the CPU: the same boxes, flips and targets; pixels close to the exact ones
    (DALI's resampling rounds otherwise), flipped ones too (a wrong flip would be far off)."""
    exact, dali = run(served, seed=2, crops_per_image=3), run(served, seed=2, crops_per_image=3, resampler="dali")
    for name in ("targets", "boxes", "mirror", "labels"):
        np.testing.assert_array_equal(exact[name], dali[name], err_msg=name)
    assert dali["images"].shape == exact["images"].shape
    diff = np.abs(dali["images"] - exact["images"]).mean(axis=(2, 3, 4))
    assert diff.max() < 0.03, diff
    unflipped = np.abs(dali["images"] - exact["images"][..., ::-1]).mean(axis=(2, 3, 4))
    assert (unflipped > 5 * diff).all()          # the check above can tell a flip apart


def test_single_crop_dali_resampler_is_the_original_graph(served):
    """n = 1 with resampler="dali": decode the window, fn.resize, crop_mirror_normalize (as before the exact
    resampler existed): close to the exact crops, same boxes and flips."""
    exact, dali = run(served, seed=4), run(served, seed=4, resampler="dali")
    np.testing.assert_array_equal(exact["boxes"], dali["boxes"])
    assert np.abs(exact["images"] - dali["images"]).mean() < 0.03


def test_channels_last_float16_and_other_filters(served):
    """Output settings apply to every crop: HWC (channels_last), float16, bicubic (vs torchvision)."""
    demo, store, _, _ = served
    out = run(served, seed=3, crops_per_image=2, memory_format="channels_last", dtype="float16",
              interpolation="bicubic")
    assert out["images"].shape == (8, 2, 40, 40, 3) and out["images"].dtype == np.float16
    row = int(out["rows"][0])
    image = Image.open(demo.images / store.keys[row]).convert("RGB")
    for k in range(2):
        ref = torchvision_crop(image, pixel_window(out["boxes"][0, k], 150, 200), bool(out["mirror"][0, k]), 40,
                               interpolation="bicubic").half().numpy().transpose(1, 2, 0)
        np.testing.assert_array_equal(out["images"][0, k], ref)


def test_settings_are_checked(served):
    with pytest.raises(ValueError, match="crops_per_image must be an integer >= 1, got 0"):
        AugmentConfig(crops_per_image=0)
    with pytest.raises(TypeError, match=r"crops_per_image must be an integer >= 1, got 2.0 \(float\)"):
        AugmentConfig(crops_per_image=2.0)
    with pytest.raises(ValueError, match="resampler must be one of 'auto', 'pillow', 'dali', got 'pil'"):
        AugmentConfig(resampler="pil")
    demo, _, bank, listing = served
    with pytest.raises(ValueError, match="resampler='pillow' .* runs on the CPU only; use resampler='dali' or 'auto'"):
        relabel_train_pipeline(batch_size=2, num_threads=1, device_id=0, device="gpu", bank=bank,
                               reader=FileReader(str(demo.images), file_list=listing),
                               augment=AugmentConfig(resampler="pillow"))
    assert AugmentConfig().resampler_for("cpu") == "pillow" and AugmentConfig().resampler_for("gpu") == "dali"
    # timm's augmentations run on one DALI-resized crop: several crops, or the exact resampler, are refused with them
    with pytest.raises(ValueError, match=r"crops_per_image=2, resampler='auto' with timm's augmentations "
                                         r"\(color_jitter, erase_prob\) is not supported yet"):
        AugmentConfig(crops_per_image=2, color_jitter=0.4, erase_prob=0.25)
    with pytest.raises(ValueError, match=r"resampler='pillow' with timm's augmentations \(interpolation='random'\)"):
        AugmentConfig(resampler="pillow", interpolation="random")
    assert AugmentConfig(color_jitter=0.4).resampler_for("cpu") == "dali"


def test_relabel_targets_box_sequences_must_match(served):
    from nvidia.dali import fn, pipeline_def

    from dali_relabel.pipelines import random_resized_crop_box, relabel_targets

    demo, _, bank, listing = served

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        jpegs, rows = FileReader(str(demo.images), file_list=listing)()
        _, _, start, end = random_resized_crop_box(jpegs)
        return relabel_targets(rows, [start, start], [end], bank=bank)[0]

    with pytest.raises(ValueError, match="rel_start and rel_end must both be one corner each, or sequences of the "
                                         "same length"):
        pipe()
