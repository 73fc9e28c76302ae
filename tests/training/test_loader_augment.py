"""The loaders with timm's augmentations: each crop keeps its box's target, and the loader contract (seeds,
resume bit for bit) holds with every augmentation on. CPU, and GPU where there is one."""

from __future__ import annotations

import torch
from loader_util import device, on_cpu, same_batches, small_demo, train_loader  # noqa: F401 (fixtures)

OUTPUTS = ("images", "targets", "boxes", "mirror", "keys")
EVERYTHING = dict(auto_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4, color_jitter_prob=0.8, grayscale_prob=0.2,
                  blur_prob=0.3, erase_prob=0.5, erase_mode="pixel", erase_count=2, interpolation="random")


def one_epoch(loader):
    return [on_cpu(b) for b in loader]


def test_augmentations_keep_each_crops_box_and_target(small_demo, device):
    """The same seed gives the same crop boxes, flips and targets with or without the augmentations: they act on
    the resized crop only, and the target stays the box's (docs/TIMM.md). The images do change."""
    plain = one_epoch(train_loader(small_demo, device, outputs=OUTPUTS))
    augmented = one_epoch(train_loader(small_demo, device, outputs=OUTPUTS, **EVERYTHING))
    for p, a in zip(plain, augmented):
        for i in range(1, len(OUTPUTS)):
            assert (torch.equal(p[i], a[i]) if isinstance(p[i], torch.Tensor) else p[i] == a[i]), OUTPUTS[i]
    changed = sum((p[0] - a[0]).abs().flatten(1).mean(1).gt(0.05).sum().item() for p, a in zip(plain, augmented))
    assert changed > 0.8 * 24


def test_seed_fixes_the_augmentations(small_demo, device):
    first = one_epoch(train_loader(small_demo, device, outputs=OUTPUTS, **EVERYTHING))
    again = one_epoch(train_loader(small_demo, device, outputs=OUTPUTS, **EVERYTHING))
    other = one_epoch(train_loader(small_demo, device, outputs=OUTPUTS, seed=4, **EVERYTHING))
    assert same_batches(first, again) and not same_batches(first, other)


def test_resume_with_augmentations_is_bit_for_bit(small_demo, device):
    """Every augmentation draws from generators re-derived per batch (see pipelines/auto_augment.py): a loader
    resumed after batch 2 yields exactly the uninterrupted run's remaining batches, with RandAugment's ops and
    the erased regions."""
    run = train_loader(small_demo, device, outputs=OUTPUTS, **EVERYTHING)
    reference, state = [], None
    for epoch in range(2):
        for b, batch in enumerate(run):
            reference.append(on_cpu(batch))
            if (epoch, b) == (0, 2):
                state = run.state_dict()
    resumed = train_loader(small_demo, device, outputs=OUTPUTS, seed=99, **EVERYTHING)
    resumed.load_state_dict(state)
    got = one_epoch(resumed) + one_epoch(resumed)
    assert same_batches(got[:len(reference) - 3], reference[3:])
