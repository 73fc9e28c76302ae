#!/usr/bin/env python3
"""Train an ImageNet classifier with plain PyTorch, or with ReLabel targets by changing four lines.

The four lines marked ``# ReLabel`` are the whole switch; the ``# standard:`` comments above the loader
lines are the plain-PyTorch lines they replace (delete the marked lines and uncomment those to get the
standard script back). The model, the loss (``nn.CrossEntropyLoss`` takes the soft targets as they come),
the optimizer, the training step and the validation loop stay the same. The ReLabel loaders keep the
DataLoader contract: every epoch is a fresh, complete one, also after ``--max-iters`` breaks the last.

    python examples/train_imagenet.py /data/imagenet --labels relabel.zarr --arch resnet50 -b 256

``DIR`` holds ``train/`` and ``val/`` in ImageFolder layout (``<split>/<class>/<image>``). On a GPU the
step uses mixed precision and channels_last; the ReLabel loaders decode with nvJPEG and compute the
targets on the GPU (on a CPU-only machine they run everything on the CPU: ``device="auto"``).
``--real-json real.json`` (or ``--real-json timm``: the copy timm ships) also reports ImageNet-ReaL top-1.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torchvision
import torchvision.transforms as T
from torch import nn

from dali_relabel import ReLabelLoader, ReLabelValLoader  # ReLabel
from dali_relabel.metrics import ReaLAccuracy
from dali_relabel.training import train_step

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KEYED = ("images", "labels", "keys")   # validation batches carry the images' file names (ImageNet-ReaL)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="dataset root with train/ and val/ class folders")
    ap.add_argument("--labels", required=True, help="ReLabel label store of the train/ images")  # ReLabel
    ap.add_argument("--arch", default="resnet50", help="torchvision model name")
    ap.add_argument("--epochs", type=int, default=90)
    ap.add_argument("-b", "--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1, help="initial learning rate (cosine schedule)")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", "--weight-decay", type=float, default=1e-4)
    ap.add_argument("-j", "--workers", type=int, default=8, help="data loading workers / threads")
    ap.add_argument("--print-freq", type=int, default=100)
    ap.add_argument("--max-iters", type=int, default=None, help="stop each epoch after this many iterations")
    ap.add_argument("--val-iters", type=int, default=None, help="validate on this many batches only")
    ap.add_argument("--real-json", default=None,
                    help="ImageNet-ReaL labels (real.json, or 'timm' for timm's copy): report ReaL top-1 too")
    return ap.parse_args(argv)


class ImageFolderWithKeys(torchvision.datasets.ImageFolder):
    """ImageFolder whose samples also carry their path relative to the root (ReaL labels go by file name)."""

    def __getitem__(self, index):
        image, label = super().__getitem__(index)
        return image, label, os.path.relpath(self.samples[index][0], self.root)


def standard_train_loader(traindir: str, args: argparse.Namespace, cuda: bool) -> torch.utils.data.DataLoader:
    """The usual torchvision training data: PIL decode, random-resized-crop, flip, normalize; hard labels."""
    transform = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    return torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(traindir, transform),
                                       batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                       pin_memory=cuda)


def standard_val_loader(valdir: str, args: argparse.Namespace, cuda: bool) -> torch.utils.data.DataLoader:
    """The usual torchvision validation data: resize 256, centre crop 224, normalize; hard labels (and file names)."""
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    return torch.utils.data.DataLoader(ImageFolderWithKeys(valdir, transform),
                                       batch_size=args.batch_size, num_workers=args.workers, pin_memory=cuda)


def real_metric(path: str | None, valdir: str) -> ReaLAccuracy | None:
    """ImageNet-ReaL labels of the validation images (checked now: every image must have an entry)."""
    if path is None:
        return None
    real = ReaLAccuracy.from_timm() if path == "timm" else ReaLAccuracy(path)
    real.check_keys([os.path.relpath(p, valdir) for p, _ in torchvision.datasets.ImageFolder(valdir).samples])
    return real


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, max_iters: int | None,
             real: ReaLAccuracy | None = None) -> tuple[float, dict | None]:
    """Top-1 accuracy (%) on the validation loader, and the ReaL accuracy when ``real`` labels are given."""
    model.eval()
    correct = seen = 0
    if real is not None:
        real.reset()
    for i, (images, labels, keys) in enumerate(loader):
        if max_iters is not None and i >= max_iters:
            break
        logits = model(images.to(device, non_blocking=True))
        correct += (logits.argmax(1).cpu() == labels.cpu()).sum().item()
        seen += len(labels)
        if real is not None:
            real.update(logits, keys)
    model.train()
    return 100.0 * correct / max(seen, 1), None if real is None else real.compute()


def main(argv=None) -> dict:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    traindir, valdir = f"{args.data}/train", f"{args.data}/val"
    torch.backends.cudnn.benchmark = True

    num_classes = sum(entry.is_dir() for entry in os.scandir(traindir))
    # standard: train_loader = standard_train_loader(traindir, args, cuda)
    train_loader = ReLabelLoader(traindir, args.labels, args.batch_size, num_threads=args.workers)  # ReLabel
    # standard: val_loader = standard_val_loader(valdir, args, cuda)
    val_loader = ReLabelValLoader(valdir, None, args.batch_size, num_threads=args.workers, outputs=KEYED)  # ReLabel
    real = real_metric(args.real_json, valdir)

    model = torchvision.models.get_model(args.arch, weights=None, num_classes=num_classes).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss()  # class indices or probabilities [B, C]
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    scaler = torch.amp.GradScaler("cuda") if cuda else None

    model.train()
    loss, acc1, real_acc, iterations = torch.tensor(math.nan), math.nan, None, 0
    for epoch in range(args.epochs):
        t0, seen = time.perf_counter(), 0
        for i, (images, targets) in enumerate(train_loader):
            if args.max_iters is not None and i >= args.max_iters:
                break
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            loss = train_step(model, images, targets, criterion, optimizer, scaler=scaler, channels_last=cuda)
            seen += len(images)
            iterations += 1
            if i % args.print_freq == 0:
                print(f"epoch {epoch} iter {i}: loss {loss.item():.4f}, "
                      f"{seen / (time.perf_counter() - t0):.0f} img/s", flush=True)
        scheduler.step()
        acc1, real_acc = validate(model, val_loader, device, args.val_iters, real)
        extra = "" if real_acc is None else (f", ReaL top-1 {real_acc['real_top1']:.2f}% "
                                             f"({real_acc['real_images']} images)")
        print(f"epoch {epoch}: train loss {loss.item():.4f}, val top-1 {acc1:.2f}%{extra}", flush=True)
    return {"iterations": iterations, "train_loss": loss.item(), "val_top1": acc1, "val_real": real_acc}


if __name__ == "__main__":
    main()
