#!/usr/bin/env python3
"""Train a timm model with ReLabel targets: timm's own conventions, with the data lines swapped.

    python examples/train_timm.py /data/imagenet --labels relabel.zarr --model resnet50 -b 256 \\
        --aa rand-m9-mstd0.5-inc1 --reprob 0.25 --mixup 0.8 --cutmix 1.0 --real-json timm

Everything is timm — create_model, resolve_data_config, create_loader's arguments, Mixup's, the optimizer and
scheduler factories, SoftTargetCrossEntropy — but the lines marked ``# ReLabel``, which replace the ``# timm:``
lines above them (delete the marked lines and uncomment those to get timm's version back): the loaders come from
``dali_relabel.timm.create_loader`` (the same arguments; the training images get ReLabel's soft targets, and the
augmentations run in DALI), ``Mixup`` from ``dali_relabel.timm`` (timm's one-hots its targets), and the loss is
always SoftTargetCrossEntropy (the targets are soft with or without Mixup). ``DIR`` holds ``train/`` and ``val/``
in ImageFolder layout. ``--real-json real.json`` (or ``timm``: the copy timm ships) also reports ImageNet-ReaL.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
from timm import create_model
from timm.data import resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: F401 (the timm variant's)
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

# timm: from timm.data import Mixup, create_dataset, create_loader
from dali_relabel.timm import Mixup, create_loader  # ReLabel
from dali_relabel.metrics import ReaLAccuracy, TopKAccuracy


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="dataset root with train/ and val/ class folders")
    ap.add_argument("--labels", required=True, help="ReLabel label store of the train/ images")  # ReLabel
    ap.add_argument("--model", default="resnet50", help="timm model name")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("-b", "--batch-size", type=int, default=128)
    ap.add_argument("--opt", default="adamw")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--aa", default="rand-m9-mstd0.5-inc1", help="timm auto_augment string ('' for none)")
    ap.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    ap.add_argument("--remode", default="pixel", help="random erasing mode")
    ap.add_argument("--mixup", type=float, default=0.8, help="Mixup alpha (0: off)")
    ap.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0: off)")
    ap.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    ap.add_argument("-j", "--workers", type=int, default=8, help="data loading workers / DALI threads")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--print-freq", type=int, default=50)
    ap.add_argument("--max-iters", type=int, default=None, help="stop each epoch after this many iterations")
    ap.add_argument("--val-iters", type=int, default=None, help="validate on this many batches only")
    ap.add_argument("--real-json", default=None, help="ImageNet-ReaL labels (real.json, or 'timm'): report ReaL")
    return ap.parse_args(argv)


@torch.no_grad()
def validate(model, loader, device, max_iters: int | None, real: ReaLAccuracy | None) -> dict:
    """Top-1/top-5 (and ReaL top-1, from the batches' file names) on the validation loader."""
    model.eval()
    accuracy = TopKAccuracy((1, 5))
    if real is not None:
        real.reset()
    for i, batch in enumerate(loader):
        if max_iters is not None and i >= max_iters:
            break
        logits = model(batch[0].to(device))
        accuracy.update(logits, batch[1].to(device))
        if real is not None:
            if len(batch) < 3:
                raise ValueError("--real-json needs the images' file names: the ReLabel loader's 'keys' output")
            real.update(logits, batch[2])
    model.train()
    return {**accuracy.compute(), **({} if real is None else real.compute())}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    traindir, valdir = os.path.join(args.data, "train"), os.path.join(args.data, "val")
    num_classes = sum(entry.is_dir() for entry in os.scandir(traindir))

    model = create_model(args.model, num_classes=num_classes).to(device)
    data_config = resolve_data_config(model=model)
    train_args = dict(batch_size=args.batch_size, is_training=True, auto_augment=args.aa or None,
                      re_prob=args.reprob, re_mode=args.remode, num_workers=args.workers, device=device, **data_config)
    eval_args = dict(batch_size=args.batch_size, is_training=False, num_workers=args.workers, device=device,
                     **data_config)
    # timm: loader_train = create_loader(create_dataset("", root=traindir, is_training=True), **train_args)
    loader_train = create_loader(traindir, store=args.labels, **train_args)  # ReLabel
    # timm: loader_eval = create_loader(create_dataset("", root=valdir), **eval_args)
    loader_eval = create_loader(valdir, outputs=("images", "labels", "keys"), **eval_args)  # ReLabel
    real = None
    if args.real_json:
        real = ReaLAccuracy.from_timm() if args.real_json == "timm" else ReaLAccuracy(args.real_json)
        real.check_keys([os.path.relpath(os.path.join(d, f), valdir) for d, _, files in os.walk(valdir)
                         for f in files if f.lower().endswith((".jpeg", ".jpg", ".png"))])

    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.smoothing,
                         num_classes=num_classes)
    # timm: train_loss_fn = SoftTargetCrossEntropy() if mixup_fn else LabelSmoothingCrossEntropy(args.smoothing)
    train_loss_fn = SoftTargetCrossEntropy()  # ReLabel
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay)
    scheduler, num_epochs = create_scheduler_v2(optimizer, sched="cosine", num_epochs=args.epochs, warmup_epochs=0)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    loss, metrics, iterations = torch.tensor(math.nan), {}, 0
    for epoch in range(num_epochs):
        t0, seen = time.perf_counter(), 0
        for i, (images, targets) in enumerate(loader_train):
            if args.max_iters is not None and i >= args.max_iters:
                break
            if mixup_fn is not None:
                images, targets = mixup_fn(images, targets)
            with torch.autocast(device.type, enabled=scaler is not None):      # mixed precision on the GPU
                loss = train_loss_fn(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            seen, iterations = seen + len(images), iterations + 1
            if i % args.print_freq == 0:
                print(f"epoch {epoch} iter {i}: loss {loss.item():.4f}, {seen / (time.perf_counter() - t0):.0f} img/s",
                      flush=True)
        scheduler.step(epoch + 1)
        metrics = validate(model, loader_eval, device, args.val_iters, real)
        real_text = f", ReaL top-1 {metrics['real_top1']:.2f}%" if "real_top1" in metrics else ""
        print(f"epoch {epoch}: train loss {loss.item():.4f}, val top-1 {metrics['top1']:.2f}%, "
              f"top-5 {metrics['top5']:.2f}%{real_text}", flush=True)
    return {"iterations": iterations, "train_loss": loss.item(), **metrics}


if __name__ == "__main__":
    main()
