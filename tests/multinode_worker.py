"""One rank of the multi-node test (tests/training/test_multinode.py), run by torchrun: trains one epoch of a tiny
model under DDP from an image folder and from shards of the same images, with the label store at a URL, and
records what this rank read (valid keys), its seed, its bank and its final weights as JSON in ``out``.

    torchrun --nnodes 2 --nproc-per-node 2 --node-rank N ... multinode_worker.py IMAGES SHARDS STORE_URL OUT
"""

from __future__ import annotations

import json
import os
import sys
import warnings


def main(images: str, shards: str, store: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    from dali_relabel import ReLabelLoader, train_step

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")   # rank, world size and the rendezvous from torchrun's variables
    result = {"rank": dist.get_rank(), "world": dist.get_world_size(), "node": int(os.environ["GROUP_RANK"]),
              "local_rank": int(os.environ["LOCAL_RANK"])}
    for name, source in (("folder", images), ("shards", shards)):
        loader = ReLabelLoader(source, store, 4, device="cpu", seed=None, crop_size=16, num_threads=1,
                               outputs=("images", "targets", "keys", "valid"))
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Flatten(),
                                                                  nn.Linear(3 * 16 * 16, loader.num_classes)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        keys = []
        for images, targets, batch_keys, valid in loader:
            train_step(model, images, targets, nn.CrossEntropyLoss(), optimizer)
            keys += [k for k, v in zip(batch_keys, valid.tolist()) if v]
        result[name] = {"keys": keys, "len": len(loader), "seed": loader.seed, "bank": str(loader.bank.path),
                        "shard": [loader.shard_id, loader.num_shards],
                        "weights": [float(p.detach().double().sum()) for p in model.parameters()]}
    with open(os.path.join(out, f"rank{result['rank']}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
