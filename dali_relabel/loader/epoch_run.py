"""One epoch's iteration: the DALI pipeline that reads an epoch's plan, from its first batch or from any batch.

Resuming at batch ``j``: the random generators of DALI's operators are counter-based (Philox) and re-derive
each sample's stream from the batch's index, so what batch ``j`` draws depends on the seed and ``j`` only, never
on the images of earlier batches. The pipeline therefore reads a tiny placeholder image in place of the images
of the ``j`` batches before it, and those batches are discarded: the generators are where the uninterrupted
run's were, at a fraction of the cost of decoding the real images (``benchmarks/epoch_bench.py``). This is
DALI's behaviour rather than its documented promise: the resume tests compare a resumed run with an
uninterrupted one bit for bit, so a DALI version that changes it fails them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .epochs import EpochPlan
from .readers import epoch_reader

if TYPE_CHECKING:
    from .base import EpochLoader


class EpochRun:
    """One epoch's iteration: its plan, its pipeline and DALI iterator, and how far it got."""

    def __init__(self, loader: EpochLoader):
        self.loader = loader
        self.plan: EpochPlan | None = None      # set by begin(), on the first next()
        self.pipeline = self.iterator = None
        self.next_batch = self.skip = 0
        self.finished = self.superseded = False

    def begin(self, plan: EpochPlan, start: int) -> None:
        """Builds the pipeline that reads ``plan`` from batch ``start`` on."""
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        loader = self.loader
        self.plan, self.next_batch = plan, start
        samples = plan.samples[start * plan.batch_size:]
        # Resuming: replay the generators through `start` batches of a placeholder image (see the module).
        self.skip = start if start and loader.RANDOM else 0
        names = loader._pipeline_names()
        with tempfile.TemporaryDirectory(prefix="dali_relabel-epoch-") as tmp:   # read when the pipeline is built
            reader = epoch_reader(loader.data, samples, skip=self.skip * plan.batch_size, directory=Path(tmp))
            self.pipeline = loader._build_pipeline(reader, plan.epoch, names)
            self.pipeline.build()
        self.iterator = DALIGenericIterator(self.pipeline, list(names), reader_name="Reader",
                                            last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)

    def adopt(self, other: EpochRun) -> None:
        """Takes over the pipeline ``other`` began (built ahead for this epoch)."""
        self.plan, self.pipeline, self.iterator = other.plan, other.pipeline, other.iterator
        self.next_batch, self.skip = other.next_batch, other.skip
        other.plan = other.pipeline = other.iterator = None

    def __iter__(self):
        return self

    def __next__(self):
        if self.superseded:
            raise RuntimeError(f"{self.loader.OWNER}: this iterator was replaced by a newer iter(loader) (or "
                               f"load_state_dict); iterate the new one")
        if self.finished:
            raise StopIteration
        first = self.plan is None
        if first:
            self.loader._start(self)
            if self.next_batch >= self.plan.num_batches:   # resumed after the last batch: nothing left
                self.finish()
                raise StopIteration
        try:
            while self.skip:
                next(self.iterator)
                self.skip -= 1
            batch = next(self.iterator)
        except StopIteration:
            self.finish()
            raise
        index = self.next_batch
        self.next_batch += 1
        out = self.loader._convert(batch[0], self.plan, index)
        if first:
            self.loader._started(self)
        if self.next_batch == self.plan.num_batches:
            self.loader._build_ahead()
        return out

    def __len__(self) -> int:
        """Batches left in this epoch."""
        return (self.loader._steps if self.plan is None else self.plan.num_batches) - self.next_batch

    def finish(self) -> None:
        # The pipeline is kept until the next epoch's first batch (see EpochLoader._started).
        self.finished = True

    def close(self) -> None:
        self.iterator = self.pipeline = None


__all__ = ["EpochRun"]
