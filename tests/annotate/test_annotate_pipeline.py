"""The annotator's DALI input pipeline (dali_relabel.pipelines.annotate): order, geometry, normalization."""

from __future__ import annotations

import numpy as np
import pytest
from dali_relabel.pipelines.annotate import RESIZE_POLICIES, annotate_pipeline
from PIL import Image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 64


def run(root, files, resize="squash", batch_size=None, positions=None):
    batch_size = batch_size or len(files)
    pipe = annotate_pipeline(file_root=str(root), files=files, size=SIZE, mean=MEAN, std=STD, resize=resize,
                             positions=positions if positions is not None else range(len(files)),
                             batch_size=batch_size, num_threads=1, device_id=None, prefetch_queue_depth=1)
    pipe.build()
    out_images, out_pos = [], []
    for _ in range(len(files) // batch_size):
        images, pos = pipe.run()
        out_images.append(np.array(images.as_tensor()))
        out_pos.append(np.array(pos.as_tensor()).reshape(-1))
    return np.concatenate(out_images), np.concatenate(out_pos)


def normalized(rgb) -> np.ndarray:
    return (np.asarray(rgb, np.float64) / 255.0 - MEAN) / STD


def test_constant_images_in_order_with_exact_normalization(tmp_path):
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (120, 130, 140)]
    files = []
    for i, c in enumerate(colours):
        name = f"c{i}.png"   # lossless, so the expected pixel values are exact
        Image.fromarray(np.full((30 + 7 * i, 50 - 5 * i, 3), c, np.uint8)).save(tmp_path / name)
        files.append(name)
    files = files + [files[-1], files[-1]]            # padding repeats the last image, as the annotator does
    images, pos = run(tmp_path, files, batch_size=3, positions=[5, 6, 7, 8, 9, 10])
    assert images.shape == (6, 3, SIZE, SIZE) and images.dtype == np.float32
    np.testing.assert_array_equal(pos, [5, 6, 7, 8, 9, 10])
    for i, c in enumerate(colours + colours[-1:] * 2):
        np.testing.assert_allclose(images[i], np.broadcast_to(normalized(c)[:, None, None], images[i].shape),
                                   atol=1e-5)


@pytest.fixture
def stripes(tmp_path):
    """200×100 (W×H) image: red for x < 80 (40% of the width), blue elsewhere."""
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, :80] = (255, 0, 0)
    a[:, 80:] = (0, 0, 255)
    Image.fromarray(a).save(tmp_path / "s.png")
    return tmp_path


RED, BLUE = normalized((255, 0, 0)), normalized((0, 0, 255))


def red_columns(image: np.ndarray, row: int) -> int:
    return int(np.sum(np.abs(image[:, row, :] - RED[:, None]).max(axis=0) < 1e-3))


@pytest.mark.parametrize("resize,expected_red", [
    ("squash", 0.4 * SIZE),                  # whole width squeezed into 64 columns
    ("crop", 0.4 * 128 - (128 - SIZE) / 2),  # height 100 -> 64, width 200 -> 128, centre 64 columns kept
    ("pad", 0.4 * SIZE),                     # width 200 -> 64, height 100 -> 32, padded to 64 rows
])
def test_resize_policies_geometry(stripes, resize, expected_red):
    (image,), _ = run(stripes, ["s.png"], resize=resize)
    # Pure-colour columns only: the one or two blended columns at the edge are excluded, so ±2.
    assert abs(red_columns(image, SIZE // 2) - expected_red) <= 2
    assert np.abs(image[:, SIZE // 2, -1] - BLUE).max() < 1e-3
    if resize == "pad":
        band = (SIZE - 32) // 2
        assert np.all(image[:, :band - 1] == 0) and np.all(image[:, SIZE - band + 1:] == 0)   # mean colour
        assert np.abs(image[:, band + 1:SIZE - band - 1, 0] - RED[:, None]).max() < 1e-3
    else:
        assert np.abs(image[:, 0, 0] - RED).max() < 1e-3 and np.abs(image[:, -1, 0] - RED).max() < 1e-3


def test_unknown_resize_policy(stripes):
    with pytest.raises(ValueError, match="resize policy 'stretch' is not one of squash, crop, pad"):
        run(stripes, ["s.png"], resize="stretch")
    assert set(RESIZE_POLICIES) == {"squash", "crop", "pad"}
