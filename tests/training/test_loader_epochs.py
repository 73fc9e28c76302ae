"""The loader contract: fresh complete epochs, exact len, seeds that fix order/crops/flips, shards that partition,
resume batch for batch, set_epoch. On the CPU, and on the GPU where there is one."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from loader_util import device, on_cpu, same_batches, small_demo, train_loader  # noqa: F401 (fixtures)

from dali_relabel import LabelStore

N = 24          # small_demo's images
OUTPUTS = ("images", "targets", "boxes", "mirror", "keys")


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b[-1]]


def epochs(loader, count):
    return [[on_cpu(b) for b in loader] for _ in range(count)]


def test_break_then_iterate_gives_full_fresh_epochs(small_demo, device):
    ld = train_loader(small_demo, device, outputs=OUTPUTS)
    assert len(ld) == 5 and ld.epoch == 0
    for i, _ in enumerate(ld):      # what `--max-iters` and Lightning's limit_train_batches do
        if i == 1:
            break
    assert ld.epoch == 0
    second = [on_cpu(b) for b in ld]
    assert ld.epoch == 1 and len(second) == len(ld)
    assert Counter(keys_of(second)) == Counter(list(small_demo.objects))      # complete: every image once
    # ... and it is epoch 1 itself: the same batches as an uninterrupted loader's second epoch.
    reference = train_loader(small_demo, device, outputs=OUTPUTS)
    assert same_batches(second, epochs(reference, 2)[1])


def test_an_exception_mid_epoch_does_not_leak_into_the_next(small_demo, device):
    ld = train_loader(small_demo, device, outputs=("keys",))
    with pytest.raises(ZeroDivisionError):
        for i, _ in enumerate(ld):
            if i == 2:
                1 / 0   # a failing training step
    assert Counter(k for keys in ld for k in keys) == Counter(list(small_demo.objects))
    # An iterator kept from before is refused, not silently mixed with the new epoch.
    old = iter(ld)
    next(old)
    iter(ld)
    with pytest.raises(RuntimeError, match="replaced by a newer iter"):
        next(old)


def test_the_seed_fixes_order_crops_and_flips(small_demo, device):
    a = epochs(train_loader(small_demo, device, seed=11, outputs=OUTPUTS), 2)
    b = epochs(train_loader(small_demo, device, seed=11, outputs=OUTPUTS), 2)
    assert same_batches(a[0] + a[1], b[0] + b[1])
    assert keys_of(a[0]) != keys_of(a[1])                                # a new order every epoch
    orders = {tuple(keys_of(epochs(train_loader(small_demo, device, seed=s, outputs=("keys",)), 1)[0]))
              for s in (0, 1, 7, 12345)}
    assert len(orders) == 4                                              # different seeds, different orders
    c = epochs(train_loader(small_demo, device, seed=12, outputs=OUTPUTS), 1)[0]
    assert not torch.equal(torch.cat([x[2] for x in a[0]]), torch.cat([x[2] for x in c]))   # and other crops


def test_seed_none_is_drawn_from_torch(small_demo):
    torch.manual_seed(5)
    a = train_loader(small_demo, seed=None, outputs=("keys",))
    torch.manual_seed(5)
    b = train_loader(small_demo, seed=None, outputs=("keys",))
    c = train_loader(small_demo, seed=None, outputs=("keys",))
    assert a.seed == b.seed != c.seed
    assert list(a) == list(b)


def test_shuffle_false_reads_the_store_order(small_demo, device):
    store = LabelStore.open(str(small_demo.labels))
    ld = train_loader(small_demo, device, shuffle=False, outputs=("rows", "keys"))
    for _ in range(2):
        batches = list(ld)
        assert keys_of(batches) == store.keys.tolist()
        assert torch.cat([r for r, _ in batches]).tolist() == list(range(N))


@pytest.mark.parametrize("policy", ["partial", "fill", "drop"])
@pytest.mark.parametrize("world", [2, 3])
def test_shards_partition_each_epoch(small_demo, device, policy, world):
    """Ranks simulated by shard_id/num_shards: same len, same order source, every image once per epoch."""
    ranks = [train_loader(small_demo, device, batch_size=4, seed=2, shard_id=r, num_shards=world, last_batch=policy,
                          outputs=("keys", "valid")) for r in range(world)]
    assert len({len(ld) for ld in ranks}) == 1
    for _ in range(2):
        seen = Counter()
        for ld in ranks:
            batches = list(ld)
            assert len(batches) == len(ld)
            seen.update(k for keys, valid in batches for k, v in zip(keys, valid.tolist()) if v)
        if policy == "drop":
            assert set(seen.values()) == {1} and len(seen) == len(ranks[0]) * 4 * world
        else:
            assert seen == Counter(list(small_demo.objects))


@pytest.mark.parametrize("stop", [(0, 0), (0, 2), (0, 4), (1, 3)])
def test_resume_yields_exactly_the_uninterrupted_batches(small_demo, device, stop):
    """State saved after batch b of epoch e; a new loader yields batches b+1.. of e, then epoch e+1, as the
    uninterrupted run did (images, targets, boxes, flips, keys bit for bit). (0, 4) is the epoch's last batch:
    the resumed loader starts the next epoch."""
    outputs = ("images", "targets", "boxes", "mirror", "keys", "labels")
    run = train_loader(small_demo, device, outputs=outputs)
    reference, state = [], None
    for epoch in range(3):
        for b, batch in enumerate(run):
            reference.append(on_cpu(batch))
            if (epoch, b) == stop:
                state = run.state_dict()
    resumed = train_loader(small_demo, device, outputs=outputs, seed=99)   # the state brings its seed
    resumed.load_state_dict(state)
    got = []
    while len(got) < len(reference):
        got += [on_cpu(b) for b in resumed]
    done = stop[0] * len(run) + stop[1] + 1
    assert same_batches(got[:len(reference) - done], reference[done:])


def test_resume_with_torch_save_and_set_epoch(small_demo, tmp_path):
    """The state survives torch.save/load; set_epoch of the restored epoch keeps the position (DistributedSampler
    scripts call it every epoch), of another epoch starts that epoch."""
    run = train_loader(small_demo, outputs=("keys",))
    it = iter(run)
    next(it), next(it)
    torch.save(run.state_dict(), tmp_path / "state.pt")
    rest = list(it)
    resumed = train_loader(small_demo, outputs=("keys",))
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    resumed.sampler.set_epoch(0)          # DistributedSampler style
    assert list(resumed) == rest
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    resumed.set_epoch(3)
    fresh = train_loader(small_demo, outputs=("keys",))
    fresh.set_epoch(3)
    assert list(resumed) == list(fresh) and resumed.epoch == 3


def test_state_of_another_loader_is_refused(small_demo):
    state = train_loader(small_demo, batch_size=5).state_dict()
    with pytest.raises(ValueError, match=r"other epochs \(batch_size: saved 5, here 6\); resume with the same"):
        train_loader(small_demo, batch_size=6).load_state_dict(state)
    with pytest.raises(ValueError, match="not a loader state"):
        train_loader(small_demo).load_state_dict({"epoch": 1})


def _ddp_worker(rank, world, port, images, labels, out):
    import json
    import warnings

    import torch.distributed as dist

    from dali_relabel import ReLabelLoader

    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(rank)    # different global generators: the seed must still be the same on both ranks
    ld = ReLabelLoader(images, labels, 4, device="cpu", seed=None, num_threads=1, outputs=("keys",))
    result = {"seed": ld.seed, "shard": [ld.shard_id, ld.num_shards], "len": len(ld),
              "epochs": [[k for keys in ld for k in keys] for _ in range(2)]}
    with open(f"{out}.{rank}", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_under_torch_distributed_ranks_share_the_seed_and_partition_epochs(small_demo, tmp_path):
    """Two gloo ranks, seed=None: rank 0's drawn seed is used by both, the shards come from the process group,
    each epoch is partitioned, and each rank's stream is the one its (seed, rank) gives."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_worker, args=(2, port, str(small_demo.images), str(small_demo.labels), out), nprocs=2, join=True)
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in range(2)]
    assert ranks[0]["seed"] == ranks[1]["seed"] and [r["shard"] for r in ranks] == [[0, 2], [1, 2]]
    assert ranks[0]["len"] == ranks[1]["len"] == 3
    for epoch in range(2):
        keys = ranks[0]["epochs"][epoch] + ranks[1]["epochs"][epoch]
        assert Counter(keys) == Counter(list(small_demo.objects))
    for r in range(2):   # reproduced in this process from (seed, rank) alone
        again = train_loader(small_demo, batch_size=4, seed=ranks[0]["seed"], shard_id=r, num_shards=2,
                             outputs=("keys",))
        assert [[k for keys in again for k in keys] for _ in range(2)] == ranks[r]["epochs"]
