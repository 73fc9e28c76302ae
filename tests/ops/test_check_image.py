"""fn.relabel.check_image: complete images pass through unchanged; broken files fail naming the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def
from PIL import Image

import dali_relabel  # noqa: F401


def encoded(fmt: str, mode: str = "RGB", size=(24, 16)) -> bytes:
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]) if mode == "L" else (size[1], size[0], 4)
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def run_files(tmp_path, files: dict[str, bytes]):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "list.txt").write_text("".join(f"{name} {i}\n" for i, name in enumerate(files)))

    @pipeline_def(batch_size=len(files), num_threads=1, device_id=None)
    def pipe():
        raw, _ = fn.readers.file(file_root=str(tmp_path), file_list=str(tmp_path / "list.txt"))
        return fn.relabel.check_image(raw), raw

    p = pipe()
    p.build()
    checked, raw = p.run()
    return [np.array(checked[i]).tobytes() for i in range(len(files))], [np.array(raw[i]).tobytes() for i in range(len(files))]


def test_complete_images_pass_through_unchanged(tmp_path):
    files = {"a.jpg": encoded("JPEG"), "g.jpg": encoded("JPEG", "L"), "c.jpg": encoded("JPEG", "CMYK"),
             "b.png": encoded("PNG"), "c.bmp": encoded("BMP"), "d.tif": encoded("TIFF"), "e.webp": encoded("WEBP"),
             # bytes after the end marker (e.g. appended metadata) are tolerated
             "t.jpg": encoded("JPEG") + b"\0" * 1000}
    checked, raw = run_files(tmp_path, files)
    assert checked == raw == list(files.values())


@pytest.mark.parametrize("data,problem", [
    (encoded("JPEG")[:-100], "truncated JPEG \\(no end-of-image marker\\)"),
    (encoded("JPEG")[:200], "truncated JPEG \\(no end-of-image marker\\)"),
    (encoded("PNG")[:-20], "truncated PNG \\(no IEND chunk\\)"),
    (b"<html>not found</html>", "not an image format DALI decodes \\(first bytes 3c68746d6c3e6e6f\\)"),
], ids=["jpeg-end", "jpeg-header", "png", "html"])
def test_broken_files_are_named(tmp_path, data, problem):
    with pytest.raises(Exception, match=f"relabel.check_image: 'sub/broken.jpg': {problem}. Replace or remove the "
                                        "file; `dali-relabel verify STORE --images DIR`"):
        (tmp_path / "sub").mkdir()
        run_files(tmp_path, {"ok.jpg": encoded("JPEG"), "sub/broken.jpg": data})


def test_empty_files_are_named_by_the_reader(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(Exception, match="File mapping failed: .*sub/broken.jpg"):
        run_files(tmp_path, {"ok.jpg": encoded("JPEG"), "sub/broken.jpg": b""})


def test_non_encoded_input_is_rejected():
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.relabel.check_image(fn.external_source(lambda: [np.zeros((2, 2), np.float32)], batch=True))

    p = pipe()
    p.build()
    with pytest.raises(Exception, match=r"relabel.check_image: expects encoded images \(1-D uint8 samples"):
        p.run()
