"""The augmented training graph for the GPU, checked without a GPU: every operator that runs on the GPU has a GPU
backend, and each input sits on the device its schema asks for (what building it on a GPU would refuse).

The graph is defined (device_id=0) but never built: DALI's Python side lists its operators
(``Pipeline._build_graph``, private: if it disappears this test fails saying so), and the checks read DALI's
registry and schemas. The GPU tests (``pytest -m gpu``) run the same graph for real where there is a GPU."""

from __future__ import annotations

import pytest
from nvidia.dali import backend
from nvidia.dali.ops import _registry

from dali_relabel import LabelStore
from dali_relabel.config import AugmentConfig
from dali_relabel.pipelines import FileReader, relabel_train_pipeline
from dali_relabel.testing.demo_dataset import build_demo_dataset

EVERYTHING = dict(auto_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4, color_jitter_prob=0.8, grayscale_prob=0.2,
                  blur_prob=0.3, erase_prob=0.5, erase_count=2, interpolation="random")


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    demo = build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=4, height=64, width=64, progress=False)
    return demo, LabelStore.open(str(demo.labels)).materialize(cache_dir=tmp_path_factory.mktemp("bank"),
                                                              progress=False)


def gpu_graph_ops(demo, bank, **augment):
    pipe = relabel_train_pipeline(batch_size=4, num_threads=1, device_id=0, seed=1, device="gpu",
                                  reader=FileReader(str(demo.images), files=["a.jpg"], rows=[0]), bank=bank,
                                  augment=AugmentConfig(crop_size=32, **augment), outputs=("images", "targets"))
    if not hasattr(pipe, "_build_graph"):
        pytest.fail("DALI's Pipeline._build_graph is gone: update this static check of the GPU graph")
    pipe._build_graph()
    return pipe._ops


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
@pytest.mark.parametrize("extra", [dict(auto_augment="original-mstd0.5"), dict(auto_augment="3a"),
                                   dict(dtype="float16", memory_format="channels_last")])
def test_gpu_graph_operators_and_devices(bank, mode, extra):
    demo, bank = bank
    gpu_ops = set(_registry.gpu_ops())
    problems = set()
    for op in gpu_graph_ops(demo, bank, **{**EVERYTHING, "erase_mode": mode, **extra}):
        device, name = op._op.device, op._op.schema_name
        if device != "gpu" or name.startswith("relabel__"):   # (the plugin's own GPU tests cover its operators)
            continue
        if name not in gpu_ops:
            problems.add(f"{name} has no GPU backend")
            continue
        schema = backend.GetSchema(name)
        for i, node in enumerate(op.inputs[:op.spec.NumRegularInput()]):      # (argument inputs are CPU)
            wanted = schema.GetInputDevice(i, "gpu") if i < schema.MaxNumInput() else None
            if (wanted or "gpu") != node.device:
                problems.add(f"{name} input {i} is on the {node.device}, the GPU operator wants it on the "
                             f"{wanted or 'gpu'}")
    assert not problems, sorted(problems)
