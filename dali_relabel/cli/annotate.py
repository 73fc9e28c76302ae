"""dali-relabel annotate: run a classifier fully convolutionally over an image tree into a label store."""

from __future__ import annotations

import argparse

HELP = "generate ReLabel label maps (top-k logits per cell) for an image tree with a torchvision/timm classifier"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR",
                   help="image tree (each top-level folder is a class: label = folder index, as ImageFolder), "
                        "or an image list file ('<relative path> [label]' lines)")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="torchvision:<name>, timm:<name> (needs the timm extra) or module.path:factory")
    p.add_argument("--out", required=True, metavar="STORE",
                   help="label store to create or resume: a path or an fsspec URL (shared by all ranks)")
    p.add_argument("--weights", metavar="FILE",
                   help="local weights: a state dict or a checkpoint with 'state_dict'/'model' (never downloaded)")
    p.add_argument("--random-init", action="store_true",
                   help="seeded random weights instead of --weights: for tests and benchmarks only (recorded)")
    p.add_argument("--num-classes", type=int, metavar="N", help="classifier width if not the architecture's default")
    p.add_argument("--size", type=int, default=475, help="input side in pixels (default 475: 15x15 maps at stride 32)")
    p.add_argument("--topk", type=int, default=5, help="classes kept per map cell (default 5)")
    p.add_argument("--scores-dtype", choices=("float16", "float32"), default="float16",
                   help="how the store keeps the logits (default float16: half the size, 11 significant bits)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available, else cpu")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--resize", choices=("squash", "crop", "pad"), default="squash",
                   help="whole image to size x size: squash (paper; aspect not kept), crop (shorter side, centre "
                        "crop) or pad (longer side, padded with the mean colour)")
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="input normalization mean in [0, 1] units (default: the model's, else ImageNet's)")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="input normalization std (as --mean)")
    p.add_argument("--block-size", type=int, default=512,
                   help="store rows per block: the unit of writing, resuming and sharing among ranks (default 512)")
    p.add_argument("--rank", type=int, help="this process's rank (default: $RANK, set by torchrun, else 0)")
    p.add_argument("--world-size", type=int, help="number of processes (default: $WORLD_SIZE, else 1)")
    p.add_argument("--num-threads", type=int, help="DALI CPU threads (default: min(8, cores per GPU))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..annotate import annotate

    report = annotate(images=args.images, model=args.model, out=args.out, weights=args.weights,
                      random_init=args.random_init, num_classes=args.num_classes, size=args.size, topk=args.topk,
                      batch_size=args.batch_size, device=args.device, amp=args.amp, resize=args.resize,
                      mean=args.mean, std=args.std, block_size=args.block_size, rank=args.rank,
                      world_size=args.world_size, num_threads=args.num_threads, progress=not args.no_progress,
                      scores_dtype=args.scores_dtype)
    who = f"rank {report.rank} of {report.world_size}: " if report.world_size > 1 else ""
    rate = report.images / report.loop_s if report.loop_s > 0 else 0.0
    print(f"{who}annotated {report.images} images in {report.blocks} blocks ({rate:.1f} img/s; "
          f"{report.skipped_blocks} blocks already done) into {report.store}")
    if report.complete:
        print(f"{report.store} is complete")
    elif report.world_size > 1:
        print(f"{report.store} is not complete yet: other ranks are still annotating, or must be (re)run")
    return 0
