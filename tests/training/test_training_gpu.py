"""train_step / teacher_targets on the GPU: float16 autocast with loss scaling, channels_last; skipped without CUDA."""

from __future__ import annotations

import torch
from conftest import requires_gpu
from test_training import batch, reference_sgd_step, tiny_net
from torch import nn

from dali_relabel.training import teacher_targets, train_step

pytestmark = requires_gpu


def test_amp_channels_last_step_matches_the_float32_step():
    images, _, soft = (t.cuda() for t in batch())
    model = tiny_net().cuda().to(memory_format=torch.channels_last)
    ref = tiny_net().cuda()
    seen = []
    model[0].register_forward_pre_hook(lambda m, i: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    scaler = torch.amp.GradScaler("cuda", init_scale=1024.0)
    loss = train_step(model, images, soft, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
                      scaler=scaler, channels_last=True)
    ref_loss = reference_sgd_step(ref, images, soft, lr=0.5)
    assert seen == [True, torch.float16] and loss.device.type == "cuda"
    assert scaler.get_scale() == 1024.0  # finite gradients: the step was taken
    torch.testing.assert_close(loss.float(), ref_loss, rtol=5e-3, atol=5e-3)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=5e-3, atol=5e-4)


def test_teacher_targets_under_autocast():
    images, _, _ = batch(size=12)
    images = images.cuda()
    teacher = tiny_net(seed=5).cuda().eval()
    probs = teacher_targets(teacher, images, size=20, amp=True, channels_last=True)
    with torch.no_grad():
        expected = torch.softmax(teacher(torch.nn.functional.interpolate(images, size=(20, 20), mode="bilinear")), 1)
    assert probs.dtype == torch.float32 and probs.device.type == "cuda"
    torch.testing.assert_close(probs, expected, rtol=1e-2, atol=1e-3)
