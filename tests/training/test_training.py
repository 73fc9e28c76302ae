"""train_step and teacher_targets (CPU): one step equals a hand-written SGD step; AMP, channels_last, KD targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dali_relabel.training import teacher_targets, train_step

C = 5


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, C))


def batch(seed: int = 1, b: int = 6, size: int = 12):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, size, size, generator=g)
    hard = torch.randint(0, C, (b,), generator=g)
    soft = torch.softmax(torch.randn(b, C, generator=g) * 2, 1)
    return images, hard, soft


def reference_sgd_step(model: nn.Module, images, targets, lr: float):
    """Cross-entropy written out (hard: -log p[y]; soft: -sum t log p), gradients by autograd, p -= lr * g."""
    logp = torch.log_softmax(model(images), 1)
    if targets.ndim == 1:
        loss = -logp[torch.arange(len(targets)), targets].mean()
    else:
        loss = -(targets * logp).sum(1).mean()
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g
    return loss.detach()


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_train_step_is_one_sgd_step(kind):
    images, hard, soft = batch()
    targets = hard if kind == "hard" else soft
    model, ref = tiny_net(), tiny_net()
    for p in model.parameters():  # stale gradients from an earlier step must not leak into this one
        p.grad = torch.full_like(p, 100.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = train_step(model, images, targets, nn.CrossEntropyLoss(), opt)
    ref_loss = reference_sgd_step(ref, images, targets, lr=0.5)
    assert loss.grad_fn is None and loss.ndim == 0
    torch.testing.assert_close(loss, ref_loss)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), tiny_net().parameters()))


def test_repeated_steps_learn_the_soft_targets():
    images, _, soft = batch(b=8)
    model = tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    losses = [train_step(model, images, soft, crit, opt).item() for _ in range(60)]
    entropy = -(soft * soft.log()).sum(1).mean().item()  # the minimum of the soft cross-entropy
    assert losses[-1] < losses[0] and losses[-1] - entropy < 0.5 * (losses[0] - entropy)


def test_scaler_runs_the_forward_in_autocast():
    images, hard, _ = batch()
    model, ref = tiny_net(), tiny_net()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    loss = train_step(model, images, hard, nn.CrossEntropyLoss(), opt, scaler=scaler)
    ref_loss = reference_sgd_step(ref, images, hard, lr=0.1)
    assert seen == [torch.bfloat16]  # CPU autocast dtype
    assert scaler.get_scale() == 1024.0  # finite gradients: the step was taken, the scale kept
    torch.testing.assert_close(loss.float(), ref_loss, rtol=2e-2, atol=2e-2)
    for p, q in zip(model.parameters(), ref.parameters()):  # the unscaled step, to bf16 precision
        torch.testing.assert_close(p, q, rtol=2e-2, atol=2e-3)


def test_channels_last_converts_the_input_only():
    images, _, soft = batch()
    model, ref = tiny_net(), tiny_net()
    layouts = []
    model[0].register_forward_pre_hook(lambda m, i: layouts.append(i[0].is_contiguous(
        memory_format=torch.channels_last)))
    train_step(model, images, soft, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
               channels_last=True)
    reference_sgd_step(ref, images, soft, lr=0.5)
    assert layouts == [True] and images.is_contiguous()  # the caller's tensor is untouched
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_teacher_targets_are_the_teachers_probabilities_at_its_resolution():
    images, _, _ = batch(size=12)
    teacher = tiny_net(seed=5).eval()
    sizes = []
    teacher[0].register_forward_pre_hook(lambda m, i: sizes.append(tuple(i[0].shape[-2:])))
    probs = teacher_targets(teacher, images, size=20, temperature=2.0)
    assert sizes == [(20, 20)] and probs.dtype == torch.float32 and not probs.requires_grad
    with torch.no_grad():  # reference: torchvision's bilinear resize, softmax(logits / T) written out
        import torchvision.transforms.functional as TF

        logits = teacher(TF.resize(images, [20, 20], antialias=False)) / 2.0
        expected = logits.exp() / logits.exp().sum(1, keepdim=True)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in teacher.parameters())
    same = teacher_targets(teacher, images)  # no size: the student's crops as they are
    assert sizes[-1] == (12, 12)
    torch.testing.assert_close(same, F.softmax(teacher(images), 1))
