"""The README's drop-in example runs as written (only the data paths and sizes swapped for the demo's)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from loader_util import small_demo  # noqa: F401 (fixture)

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = [pytest.mark.filterwarnings("ignore:1 class folders hold no images"),
              pytest.mark.usefixtures("one_torch_thread")]


def drop_in_example() -> str:
    text = README.read_text()
    section = text[text.index("## Drop-in for a PyTorch training loop"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_drop_in_example_runs(small_demo, capsys):
    code = drop_in_example()
    swaps = {'"imagenet/train"': repr(str(small_demo.images)), '"imagenet/val"': repr(str(small_demo.images)),
             '"labels.zarr"': repr(str(small_demo.labels)), "batch_size=256": "batch_size=8",
             "resnet50": "mobilenet_v3_small", "range(90)": "range(2)"}
    for old, new in swaps.items():
        assert old in code, f"the README example no longer contains {old}: update this test"
        code = code.replace(old, new)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert math.isfinite(scope["loss"].item()) and scope["train_loader"].epoch == 1
    out = capsys.readouterr().out
    assert re.search(r"epoch 1: loss [\d.]+, val top-1 [\d.]+%", out), out
