"""The loaders as Lightning dataloaders, unchanged: len, a fresh epoch per iter (limit_train_batches breaks each
epoch), validation once per image, and mid-epoch resume from a checkpoint through state_dict/load_state_dict."""

from __future__ import annotations

import pytest
import torch
from loader_util import small_demo  # noqa: F401 (fixture)

import lightning as L
from dali_relabel import ReLabelLoader, ReLabelValLoader

pytestmark = pytest.mark.filterwarnings("ignore:1 class folders hold no images")


class Recorder(L.LightningModule):
    """A tiny classifier that records what each step receives."""

    def __init__(self, demo, num_classes: int):
        super().__init__()
        self.demo, self.net = demo, torch.nn.Conv2d(3, num_classes, 32)
        self.train_keys: list[list[str]] = []
        self.val_keys: list[str] = []

    def train_dataloader(self):
        return ReLabelLoader(self.demo.images, self.demo.labels, 5, device="cpu", crop_size=32, seed=4, num_threads=2,
                             outputs=("images", "targets", "keys"))

    def val_dataloader(self):
        return ReLabelValLoader(self.demo.images, None, 7, device="cpu", crop_size=32, num_threads=2,
                                outputs=("images", "labels", "keys"))

    def training_step(self, batch, index):
        images, targets, keys = batch
        self.train_keys.append(list(keys))
        return torch.nn.functional.cross_entropy(self.net(images).flatten(1), targets)

    def validation_step(self, batch, index):
        images, labels, keys = batch
        self.val_keys += keys
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(images).flatten(1), labels),
                 batch_size=len(keys))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(tmp_path, **kw):
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, **kw)


def uninterrupted_epochs(demo, count):
    loader = Recorder(demo, 10).train_dataloader()
    return [[list(keys) for _, _, keys in loader] for _ in range(count)]


def test_limit_train_batches_gives_fresh_epochs_and_validation_sees_each_image_once(small_demo, tmp_path):
    model = Recorder(small_demo, 10)
    trainer(tmp_path, max_epochs=3, limit_train_batches=2).fit(model)
    epochs = uninterrupted_epochs(small_demo, 3)
    # Each epoch starts fresh where the uninterrupted loader's epoch starts (not in the rest of the last one).
    assert model.train_keys == [keys for epoch in epochs for keys in epoch[:2]]
    assert sorted(model.val_keys) == sorted(list(small_demo.objects) * 3)


def test_mid_epoch_checkpoint_resumes_the_same_batches(small_demo, tmp_path):
    """Checkpoint after step 3 (of 5 per epoch); a new Trainer resumed from it trains on exactly the batches the
    uninterrupted run trained on after step 3 (Lightning saves and restores the loader's state_dict)."""
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1,
                                                filename="{step}")
    full = Recorder(small_demo, 10)
    trainer(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[saver], limit_val_batches=0).fit(full)
    assert full.train_keys == [keys for epoch in uninterrupted_epochs(small_demo, 2) for keys in epoch]
    resumed = Recorder(small_demo, 10)
    trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(resumed, ckpt_path=tmp_path / "ckpt" / "step=3.ckpt")
    assert resumed.train_keys == full.train_keys[3:]




def test_the_lightning_example_trains(small_demo, tmp_path):
    """examples/train_lightning.py, as written, on the demo (CPU): two short epochs with validation."""
    import importlib.util
    import math
    from pathlib import Path

    root = tmp_path / "imagenet"
    root.mkdir()
    for split in ("train", "val"):
        (root / split).symlink_to(small_demo.images, target_is_directory=True)
    path = Path(__file__).resolve().parents[2] / "examples" / "train_lightning.py"
    spec = importlib.util.spec_from_file_location("train_lightning", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trainer = module.main([str(root), "--labels", str(small_demo.labels), "--arch", "resnet18", "--epochs", "2",
                           "-b", "4", "--crop-size", "64", "-j", "2", "--limit-train-batches", "2",
                           "--limit-val-batches", "2", "--out", str(tmp_path / "runs")])
    assert trainer.current_epoch == 2 and trainer.global_step == 4
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    assert 0 <= float(trainer.callback_metrics["val_top1"]) <= 100
