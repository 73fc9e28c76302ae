#!/usr/bin/env python3
"""Train an ImageNet classifier with PyTorch Lightning and ReLabel targets.

The loaders are returned from ``train_dataloader()`` / ``val_dataloader()`` as they are: Lightning takes
their ``len``, starts a fresh epoch with each ``iter`` (also when ``--limit-train-batches`` stops an epoch
early), calls ``loader.sampler.set_epoch``, and saves their ``state_dict()`` in its checkpoints, so that
``--resume CKPT`` continues mid-epoch with exactly the batches the interrupted run would have seen.

    python examples/train_lightning.py /data/imagenet --labels relabel.zarr --arch resnet50 -b 256

``DIR`` holds ``train/`` and ``val/`` in ImageFolder layout. Under ``torchrun`` (or Lightning's own DDP
launcher) each rank reads its shard of every epoch; ``--seed`` makes the order, crops and flips reproducible.
"""

from __future__ import annotations

import argparse
import os

import lightning as L
import torch
import torchvision
from torch import nn

from dali_relabel import ReLabelLoader, ReLabelValLoader


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="dataset root with train/ and val/ class folders")
    ap.add_argument("--labels", required=True, help="ReLabel label store of the train/ images")
    ap.add_argument("--arch", default="resnet50", help="torchvision model name")
    ap.add_argument("--epochs", type=int, default=90)
    ap.add_argument("-b", "--batch-size", type=int, default=256, help="per process")
    ap.add_argument("--crop-size", type=int, default=224)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("-j", "--workers", type=int, default=8, help="DALI threads per process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-train-batches", type=int, default=None, help="stop each epoch after this many batches")
    ap.add_argument("--limit-val-batches", type=int, default=None)
    ap.add_argument("--out", default="lightning_runs", help="checkpoints and logs")
    ap.add_argument("--resume", help="a checkpoint to continue from (mid-epoch checkpoints resume mid-epoch)")
    return ap.parse_args(argv)


class ReLabelClassifier(L.LightningModule):
    def __init__(self, args: argparse.Namespace, num_classes: int):
        super().__init__()
        self.args = args
        self.model = torchvision.models.get_model(args.arch, weights=None, num_classes=num_classes)
        self.criterion = nn.CrossEntropyLoss()   # takes the [B, C] soft targets as they come

    def train_dataloader(self):
        a = self.args
        return ReLabelLoader(f"{a.data}/train", a.labels, a.batch_size, crop_size=a.crop_size, seed=a.seed,
                             num_threads=a.workers)

    def val_dataloader(self):
        a = self.args
        return ReLabelValLoader(f"{a.data}/val", None, a.batch_size, crop_size=a.crop_size, num_threads=a.workers,
                                outputs=("images", "labels", "valid"))

    def training_step(self, batch, index):
        images, targets = batch
        loss = self.criterion(self.model(images), targets)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, index):
        images, labels, valid = batch      # valid: False only for repeats that keep DDP ranks in step
        correct = (self.model(images).argmax(1) == labels)[valid.to(labels.device)]
        self.log("val_top1", 100.0 * correct.float().mean(), batch_size=len(correct), sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.args.lr, momentum=0.9, weight_decay=1e-4)
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.args.epochs)]


def main(argv=None) -> L.Trainer:
    args = parse_args(argv)
    num_classes = sum(entry.is_dir() for entry in os.scandir(f"{args.data}/train"))
    # Checkpoints every 1000 steps as well as at epoch ends: they hold the loader's position.
    every = L.pytorch.callbacks.ModelCheckpoint(dirpath=f"{args.out}/checkpoints", every_n_train_steps=1000,
                                                save_top_k=-1)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.out, callbacks=[every],
                        limit_train_batches=args.limit_train_batches, limit_val_batches=args.limit_val_batches,
                        precision="16-mixed" if torch.cuda.is_available() else "32-true")
    trainer.fit(ReLabelClassifier(args, num_classes), ckpt_path=args.resume)
    return trainer


if __name__ == "__main__":
    main()
