"""This process's place in a data-parallel job: rank, world size, local rank.

One helper for every stage (the loader shards by it, the annotator splits blocks by it), so that
``torchrun``, an initialised ``torch.distributed`` process group and explicit arguments are read
the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Ranks:
    """Rank and world size of this process; ``local_rank`` is its index on this node (None: unknown)."""

    rank: int
    world_size: int
    local_rank: int | None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (torchrun and SLURM set it to "
                         f"the process's {name.lower().replace('_', ' ')}); unset it or fix the launcher") from None


def process_ranks(rank: int | None = None, world_size: int | None = None, *, env: bool = True) -> Ranks:
    """This process's ranks, from the first source that has them.

    Order: explicit ``rank``/``world_size``; an initialised ``torch.distributed`` process group;
    (``env=True``) the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables that torchrun sets; else 0 of 1.

    Raises:
        ValueError: a variable is not an integer, or the rank is not in ``[0, world_size)``.
    """
    local = _env_int("LOCAL_RANK")
    if rank is None or world_size is None:
        group_rank = group_world = None
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                group_rank, group_world = dist.get_rank(), dist.get_world_size()
        except ImportError:
            pass
        if group_world is None and env:
            group_rank, group_world = _env_int("RANK"), _env_int("WORLD_SIZE")
        if world_size is None:
            world_size = group_world if group_world is not None else 1
        if rank is None:
            rank = group_rank if group_rank is not None else 0
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world size {world_size})")
    return Ranks(rank=rank, world_size=world_size, local_rank=local)


__all__ = ["Ranks", "process_ranks"]
