"""Which images each rank reads in each epoch, in which order, in which batches: a pure function of the arguments.

The loaders never let DALI choose the order. For epoch ``e`` every rank computes the same permutation of the
``N`` images from ``(seed, e)`` (or takes the store order with ``shuffle=False``), lays it out as a sequence of
``T`` positions (``T = N``, or a little more or less, see ``last_batch``), and rank ``r`` of ``W`` reads positions
``r, r + W, r + 2W, ...`` in batches of ``B`` (DistributedSampler's layout). So

* step ``s`` of every rank together covers positions ``[s·W·B, (s + 1)·W·B)``: the ranks partition the epoch;
* every rank has the same number of batches (DDP collectives stay in step);
* the plan is reproduced exactly from ``(seed, epoch, N, B, W, last_batch, shuffle)``, which is what resuming
  an epoch half-way relies on.

``last_batch`` policies (``N`` images, ``W`` ranks, ``B`` per batch, ``R = N mod (W·B)``):

* "partial": every image exactly once; the last step has ``R`` images spread over the ranks. If ``0 < R < W``
  a rank would have no image in the last step: the ranks without one read one repeated image there, marked
  not ``valid`` (``T = N + W - R``).
* "fill": every step full; the last step is completed with images from the start of the epoch's order,
  marked not ``valid`` (``T = ceil(N / (W·B))·W·B``).
* "drop": only full steps (``T = floor(N / (W·B))·W·B``): the last ``R`` images of each epoch's order are
  skipped (different ones every epoch when shuffling).
"""

from __future__ import annotations

import dataclasses

import numpy as np

LAST_BATCH = ("partial", "fill", "drop")
# Purposes of derived seeds (the same (seed, epoch) gives independent streams for each).
ORDER_STREAM, AUGMENT_STREAM = 0, 1


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived from ``seed`` and ``keys`` (numpy's SeedSequence: well mixed streams)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint32)[0] & 0x7FFFFFFF)


def epoch_positions(num_samples: int, batch_size: int, world_size: int, last_batch: str) -> int:
    """``T``: the number of positions in one epoch's sequence (see the module)."""
    n, step = num_samples, world_size * batch_size
    if last_batch == "fill":
        return -(-n // step) * step
    if last_batch == "drop":
        return n // step * step
    rest = n % step
    return n + world_size - rest if 0 < rest < world_size else n


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int, last_batch: str) -> int:
    """Batches per rank per epoch (the same on every rank)."""
    return -(-epoch_positions(num_samples, batch_size, world_size, last_batch) // (world_size * batch_size))


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """One rank's reading order in one epoch.

    Attributes:
        epoch: the epoch's index.
        samples: [P] int64 indices into the loader's images, in reading order.
        valid: [P] bool: False for repeated images that only fill a batch (``last_batch`` "fill", or a rank's
            one-image last batch under "partial").
        batch_size: B.
    """

    epoch: int
    samples: np.ndarray
    valid: np.ndarray
    batch_size: int

    @property
    def num_batches(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def batch(self, index: int) -> slice:
        """Positions (into ``samples``) of batch ``index``."""
        return slice(index * self.batch_size, min((index + 1) * self.batch_size, len(self.samples)))


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool, base_order: np.ndarray | None = None
                ) -> np.ndarray:
    """The epoch's order of all images: a permutation drawn from (seed, epoch), or ``base_order`` unshuffled."""
    if not shuffle:
        return np.arange(num_samples) if base_order is None else np.asarray(base_order, np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, ORDER_STREAM]))
    return rng.permutation(num_samples)


def grouped_order(groups: np.ndarray, *, seed: int, epoch: int) -> np.ndarray:
    """An epoch's order that keeps each group's members together: the groups in an order drawn from
    ``(seed, epoch)``, each group's members shuffled within it (webdataset shards: a group is a tar, which DALI
    reads in one run; see ``dali_relabel.shards.reading_order``).

    Args:
        groups: [N] int group of each item (any values).

    Returns:
        [N] int64 permutation of ``range(N)``.
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, ORDER_STREAM]))
    names, group_of = np.unique(groups, return_inverse=True)
    group_rank = rng.permutation(len(names))[group_of]
    return np.lexsort((rng.random(len(groups)), group_rank))


def plan_epoch(*, num_samples: int, batch_size: int, epoch: int, seed: int, shuffle: bool, rank: int,
               world_size: int, last_batch: str, base_order: np.ndarray | None = None,
               order: np.ndarray | None = None) -> EpochPlan:
    """Rank ``rank``'s plan for epoch ``epoch`` (see the module for the layout and the policies); ``order``: the
    epoch's order when the caller draws it (e.g. :func:`grouped_order`), instead of ``seed``/``shuffle``."""
    if order is None:
        order = epoch_order(num_samples, seed=seed, epoch=epoch, shuffle=shuffle, base_order=base_order)
    total = epoch_positions(num_samples, batch_size, world_size, last_batch)
    positions = np.arange(rank, total, world_size)
    return EpochPlan(epoch=epoch, samples=order[positions % num_samples], valid=positions < num_samples,
                     batch_size=batch_size)


__all__ = ["AUGMENT_STREAM", "EpochPlan", "LAST_BATCH", "ORDER_STREAM", "derive_seed", "epoch_order",
           "epoch_positions", "grouped_order", "plan_epoch", "steps_per_epoch"]
