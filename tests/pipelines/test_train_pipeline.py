"""relabel_train_pipeline and relabel_targets: objects carry their geometry (C and N from the bank), configs
instead of flat keywords, and the old calls still work with a DeprecationWarning and give the same batches."""

from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import pipeline_def
from reference import slow_label_pool

from dali_relabel import LabelStore
from dali_relabel.config import AugmentConfig, TargetConfig
from dali_relabel.pipelines import FileReader, random_resized_crop_box, relabel_targets, relabel_train_pipeline
from dali_relabel.testing.demo_dataset import build_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=8, height=150, width=200, progress=False)


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):
    store = LabelStore.open(str(demo.labels))
    bank = store.materialize(cache_dir=tmp_path_factory.mktemp("bank"), progress=False)
    listing = tmp_path_factory.mktemp("list") / "rows.txt"
    listing.write_text("".join(f"{k} {i}\n" for i, k in enumerate(store.keys.tolist())))
    return store, bank, str(listing)


def outputs(pipe):
    pipe.build()
    return [np.stack([np.array(t[i]) for i in range(len(t))]) for t in pipe.run()]


def test_targets_with_the_bank_object_or_its_path(demo, served):
    """C comes from the bank (no num_classes anywhere); the targets are the slow reference's."""
    store, bank, listing = served
    for given in (bank, str(bank.path)):
        pipe = relabel_train_pipeline(batch_size=8, num_threads=2, device_id=None, seed=1, device="cpu",
                                      reader=FileReader(str(demo.images), file_list=listing), bank=given,
                                      augment=AugmentConfig(crop_size=32), target_config=TargetConfig(temperature=2.0),
                                      outputs=("targets", "boxes", "rows"))
        targets, boxes, rows = outputs(pipe)
        assert targets.shape == (8, store.num_classes)
        for t, b, r in zip(targets, boxes, rows):
            ref = slow_label_pool(*store.read(int(r)), b[:2], b[2:], store.num_classes, temperature=2.0)
            np.testing.assert_allclose(t, ref, rtol=1e-5, atol=1e-6)


def test_the_old_flat_keywords_give_the_same_batch(demo, served):
    store, bank, listing = served
    names = ("images", "targets", "labels", "boxes", "mirror")
    new = outputs(relabel_train_pipeline(
        batch_size=8, num_threads=2, device_id=None, seed=1, device="cpu", outputs=names,
        reader=FileReader(str(demo.images), file_list=listing), bank=bank,
        augment=AugmentConfig(crop_size=32, flip_prob=0.3), target_config=TargetConfig(transpose_box=True)))
    with pytest.warns(DeprecationWarning) as record:
        old = outputs(relabel_train_pipeline(
            batch_size=8, num_threads=2, device_id=None, seed=1, device="cpu", outputs=names,
            file_root=str(demo.images), file_list=listing, shuffle=False, bank=str(bank.path),
            num_classes=store.num_classes, crop_size=32, flip_prob=0.3, official_axes=True))
    messages = " | ".join(str(w.message) for w in record)
    assert "file_root=, file_list=, shuffle= are deprecated: pass reader=FileReader(...)" in messages
    assert "num_classes= is deprecated: C and N come from the bank" in messages
    assert "official_axes= is deprecated, use transpose_box=" in messages
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)


def test_relabel_targets_old_keywords(demo, served):
    store, bank, listing = served

    def run(**target_args):
        @pipeline_def(batch_size=8, num_threads=2, device_id=None, seed=3)
        def pipe():
            jpegs, rows = FileReader(str(demo.images), file_list=listing)()
            _, _, start, end = random_resized_crop_box(jpegs)
            return relabel_targets(rows, start, end, **target_args)[0]

        return outputs(pipe())[0]

    new = run(bank=bank, config=TargetConfig(temperature=0.5, transpose_box=True))
    with pytest.warns(DeprecationWarning, match="temperature= one by one is deprecated: pass "
                                                r"config=TargetConfig\(temperature=...\)"):
        old = run(bank=str(bank.path), num_classes=store.num_classes, temperature=0.5, official_axes=True,
                  missing_from=None)
    np.testing.assert_array_equal(new, old)
    with pytest.raises(ValueError, match=r"num_classes=3 but the bank .* has 10 classes"), \
            pytest.warns(DeprecationWarning):
        run(bank=bank, num_classes=3)
    with pytest.raises(ValueError, match="missing must be one of 'error', 'onehot', got 'skip'"):
        run(bank=bank, missing="skip")


def test_pipeline_arguments_are_checked(demo):
    with pytest.raises(ValueError, match=r"unknown outputs \['pixels'\]"):
        relabel_train_pipeline(batch_size=1, num_threads=1, device_id=None, reader=FileReader("x", file_list="y"),
                               outputs=("pixels",))
    with pytest.raises(ValueError, match="the targets and labels outputs need a label bank"):
        relabel_train_pipeline(batch_size=1, num_threads=1, device_id=None, reader=FileReader("x", file_list="y"))
    with pytest.raises(TypeError, match="relabel_train_pipeline got an unexpected keyword argument 'crop'"):
        relabel_train_pipeline(batch_size=1, num_threads=1, device_id=None, reader=FileReader("x", file_list="y"),
                               crop=3)
    with pytest.raises(ValueError, match="FileReader: give files= .* or file_list=, not both"):
        FileReader("x")
