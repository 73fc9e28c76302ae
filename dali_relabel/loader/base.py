"""What the training and validation loaders share: epochs, seeds, shards, resume, devices, torch batches.

Each epoch runs in a DALI pipeline built for it, from a plan computed in Python (:mod:`.epochs`): the reader
gets this rank's file list for the epoch in order, and the random generators a seed derived from
``(seed, epoch, rank)``. So:

* ``iter(loader)`` always starts a fresh, complete epoch, whatever happened to the previous iteration
  (finished, ``break``, an exception in the training step): the previous epoch's pipeline is dropped.
* Crops and flips of batch ``j`` depend only on that seed and ``j`` (DALI's generators are counter-based and
  re-derive every batch from the batch index), so a resumed epoch starts its pipeline at batch ``j`` by
  reading, for the ``j`` batches before it, a tiny placeholder image instead of the real ones: the generators
  advance exactly as in the uninterrupted run, and the skipped batches cost a fraction of real ones
  (:mod:`.epoch_run`).
* ``len(loader)`` is exact and the same on every rank (see ``epochs.steps_per_epoch``).
"""

from __future__ import annotations

import hashlib
import sys
import warnings
import weakref
from typing import Sequence

import numpy as np
import torch

from ..config import ImageConfig, check_bool, check_choice, check_int
from ..distributed import process_ranks
from .dataset import LabeledImages
from .epoch_run import EpochRun
from .epochs import AUGMENT_STREAM, LAST_BATCH, EpochPlan, derive_seed, plan_epoch, steps_per_epoch
from .readers import graph_reader

DEVICES = ("auto", "gpu", "cpu")
STATE_FORMAT = "dali_relabel.loader"
STATE_VERSION = 1
_announced_devices: set[str] = set()


def resolve_device(owner: str, device: str) -> str:
    """"gpu" or "cpu"; "auto" is the GPU when torch sees CUDA, else the CPU, said once per process."""
    check_choice("device", device, DEVICES)
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
        if device not in _announced_devices:
            _announced_devices.add(device)
            why = "CUDA is visible" if device == "gpu" else "no CUDA device is visible"
            print(f"dali_relabel: {owner}(device='auto') runs on the {device.upper()} ({why}); pass device= to "
                  f"choose", file=sys.stderr)
    elif device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError(f"{owner}(device='gpu') needs CUDA; no GPU is visible. Use device='cpu' or 'auto'.")
    return device


def resolve_seed(owner: str, seed: int | None, world_size: int) -> int:
    """The loader's seed: given, or drawn from torch's global generator (so ``torch.manual_seed`` and
    Lightning's ``seed_everything`` fix it), broadcast from rank 0 under an initialised process group."""
    if seed is not None:
        return check_int("seed", seed, low=0, high=2**63 - 1)
    drawn = int(torch.randint(0, 2**31 - 1, ()).item())
    if world_size > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(f"{owner}: with num_shards > 1 and no torch.distributed process group, pass seed= (the "
                             f"same on every rank): the ranks' shards partition each epoch only if they shuffle "
                             f"alike")
        box = [drawn]
        dist.broadcast_object_list(box, src=0)
        drawn = int(box[0])
    return drawn


class EpochLoader:
    """Base of ``ReLabelLoader`` and ``ReLabelValLoader`` (see the module).

    Subclasses set ``OWNER``, ``OUTPUTS`` (loader output names) and ``RANDOM`` (whether the pipeline draws
    random numbers, i.e. whether resuming must replay the generators), and implement :meth:`_build_pipeline`.
    """

    OWNER = "EpochLoader"
    OUTPUTS: tuple[str, ...] = ()
    RANDOM = True
    # loader output -> pipeline output; outputs not listed are made on the host from the plan
    PIPELINE_OUTPUTS = {"images": "images", "targets": "targets", "labels": "labels", "boxes": "boxes",
                        "mirror": "mirror"}
    RENAMED_OUTPUTS = {"indices": "rows"}

    def _setup(self, *, data: LabeledImages, image_config: ImageConfig, batch_size, outputs: Sequence[str], device,
               seed, shuffle, last_batch, num_threads, device_id, shard_id, num_shards, prefetch) -> None:
        owner = self.OWNER
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.outputs = self._check_outputs(outputs)
        self.num_threads = check_int("num_threads", num_threads, low=1)
        self.prefetch = check_int("prefetch", prefetch, low=1)
        self.shuffle = check_bool("shuffle", shuffle)
        self.last_batch = check_choice("last_batch", last_batch, LAST_BATCH)
        self.device = resolve_device(owner, device)
        # Shards follow an initialised torch.distributed process group (as DistributedSampler does).
        ranks = process_ranks(env=False)
        self.num_shards = ranks.world_size if num_shards is None else check_int("num_shards", num_shards, low=1)
        if shard_id is None:
            shard_id = ranks.rank if num_shards is None else 0
        self.shard_id = check_int("shard_id", shard_id, low=0, high=self.num_shards - 1)
        self.device_id = None
        if self.device == "gpu":
            if device_id is None:
                device_id = ranks.local_rank if ranks.local_rank is not None else torch.cuda.current_device()
            self.device_id = check_int("device_id", device_id, low=0, high=torch.cuda.device_count() - 1)
        self.seed = resolve_seed(owner, seed, self.num_shards)
        self.data, self.image_config = data, image_config
        self._steps = steps_per_epoch(len(data), self.batch_size, self.num_shards, self.last_batch)
        if self._steps == 0:
            raise ValueError(f"{owner}: last_batch='drop' with {len(data)} images, batch_size={self.batch_size} and "
                             f"{self.num_shards} ranks leaves no full batch: an epoch would be empty")
        self._next = (0, 0)             # (epoch, batch) the next iter() starts at
        self._run: EpochRun | None = None     # the latest iterator
        self._done: list[EpochRun] = []        # runs whose pipelines are still held (see _started)
        self._ahead: EpochRun | None = None      # the next epoch's, built during this one's last batch
        self._digest: str | None = None

    def _check_outputs(self, outputs: Sequence[str]) -> tuple[str, ...]:
        if isinstance(outputs, str):
            outputs = (outputs,)
        outputs = tuple(outputs)
        for old, new in self.RENAMED_OUTPUTS.items():
            if old in outputs:
                warnings.warn(f"{self.OWNER}: the {old!r} output is now called {new!r} (same values)",
                              DeprecationWarning, stacklevel=4)
                outputs = tuple(new if o == old else o for o in outputs)
        bad = [o for o in outputs if o not in self.OUTPUTS]
        if bad or not outputs:
            raise ValueError(f"{self.OWNER}: unknown outputs {bad}; outputs must be a non-empty sequence of names from "
                             f"{self.OUTPUTS}")
        return outputs

    # ---- the epoch protocol ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self._steps

    def __iter__(self) -> EpochRun:
        """An iterator over the next epoch: a fresh, complete one, also after a break or an exception in the
        previous one. The epoch is taken when the first batch is asked for (code that only checks that the loader
        is iterable, as Lightning does, consumes nothing)."""
        if self._run is not None:
            self._run.superseded = True
        self._run = EpochRun(self)
        return self._run

    def _start(self, run: EpochRun) -> None:
        """Called by ``run`` on its first ``next()``: takes the next epoch and builds its pipeline (or adopts the
        one built ahead for it)."""
        bank = getattr(self, "bank", None)
        if bank is not None:
            bank.check_files()  # a bank file shrunk under us: a clear error now rather than a SIGBUS later
        epoch, start = self._next
        self._next = (epoch + 1, 0)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.plan.epoch == epoch and ahead.next_batch == start:
            run.adopt(ahead)
            return
        if ahead is not None:      # built for a position that set_epoch / load_state_dict changed since
            ahead.close()
        run.begin(self.plan(epoch), start)

    def _build_ahead(self) -> None:
        """Called as an epoch yields its last batch: builds the next epoch's pipeline now, so that its first
        batches decode while the training step runs, as a persistent pipeline's would."""
        if self._ahead is None:
            epoch, start = self._next
            self._ahead = EpochRun(self)
            self._ahead.begin(self.plan(epoch), start)

    def _started(self, run: EpochRun) -> None:
        """Called by ``run`` once its first batch is out: the previous epoch's pipeline is dropped only now, so
        that on the GPU the label bank's device copy (shared by the pipelines alive in the process) stays."""
        for other in self._done:
            if other is not run:
                other.close()
        self._done = [run]

    @property
    def epoch(self) -> int:
        """The epoch the current (or last) iteration yields; before the first, the one the first will yield."""
        run = self._run
        return run.plan.epoch if run is not None and run.plan is not None else self._next[0]

    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` yields epoch ``epoch`` (for scripts written for ``DistributedSampler.set_epoch``).

        After :meth:`load_state_dict`, setting the restored epoch keeps its position (the epoch resumes); any
        other epoch starts at its first batch.
        """
        epoch = check_int("epoch", epoch, low=0)
        if epoch != self._next[0]:
            self._next = (epoch, 0)

    @property
    def sampler(self) -> _EpochSetter:
        """``loader.sampler.set_epoch(e)``, as scripts (and Lightning) call it on a DataLoader's sampler."""
        return _EpochSetter(self)

    # A DataLoader's attribute, which code that finds ``sampler`` (Lightning) reads too: there is none.
    batch_sampler = None

    def plan(self, epoch: int) -> EpochPlan:
        """This rank's plan of epoch ``epoch`` (images in order, batches, padding)."""
        return plan_epoch(num_samples=len(self.data), batch_size=self.batch_size, epoch=epoch, seed=self.seed,
                          shuffle=self.shuffle, rank=self.shard_id, world_size=self.num_shards,
                          last_batch=self.last_batch,
                          order=self.data.epoch_order(seed=self.seed, epoch=epoch, shuffle=self.shuffle))

    def augment_seed(self, epoch: int) -> int:
        """Seed of this rank's crop and flip generators in ``epoch``."""
        return derive_seed(self.seed, epoch, self.shard_id, AUGMENT_STREAM)

    # ---- resume (torch.utils.data's stateful convention) ------------------------------------------------

    def state_dict(self) -> dict:
        """Where the loader is: after batch ``b`` of epoch ``e`` (while iterating, also after a ``break``), the
        next batch a loader given this state yields is batch ``b + 1`` of ``e`` (the next epoch's first after the
        last). Plain ints and strings (safe for ``torch.save`` and JSON)."""
        run = self._run
        if run is not None and run.plan is not None and not run.finished and self._next == (run.plan.epoch + 1, 0):
            epoch, batch = run.plan.epoch, run.next_batch      # mid-epoch (and no set_epoch since)
        else:
            epoch, batch = self._next
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "epoch": epoch, "batch": batch,
                "seed": self.seed, "batch_size": self.batch_size, "world_size": self.num_shards,
                "num_samples": len(self.data), "shuffle": self.shuffle, "last_batch": self.last_batch,
                "images_digest": self.images_digest()}

    def load_state_dict(self, state: dict) -> None:
        """Continues where ``state`` (from :meth:`state_dict`, possibly of another process) left off: the next
        ``iter()`` yields the remaining batches of its epoch, exactly as the uninterrupted run did (the seed is
        restored too).

        Raises:
            ValueError: the state is not a loader's, or was made with another dataset, batch size, world size,
                shuffle or last-batch policy (the message names them): those decide the epoch's batches.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.OWNER}.load_state_dict: not a loader state (expected the dict of state_dict())")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.OWNER}.load_state_dict: state version {state.get('version')!r}, this loader "
                             f"reads version {STATE_VERSION}")
        mine = {"batch_size": self.batch_size, "world_size": self.num_shards, "num_samples": len(self.data),
                "shuffle": self.shuffle, "last_batch": self.last_batch, "images_digest": self.images_digest()}
        differ = [f"{k}: saved {state.get(k)!r}, here {v!r}" for k, v in mine.items() if state.get(k) != v]
        if differ:
            raise ValueError(f"{self.OWNER}.load_state_dict: the state was saved by a loader with other epochs "
                             f"({'; '.join(differ)}); resume with the same images, batch_size, world size, shuffle "
                             f"and last_batch")
        epoch, batch = check_int("epoch", state["epoch"], low=0), check_int("batch", state["batch"], low=0)
        if batch > self._steps:
            raise ValueError(f"{self.OWNER}.load_state_dict: batch {batch} is past the epoch's {self._steps}")
        self.seed = check_int("seed", state["seed"], low=0)
        self._next = (epoch + 1, 0) if batch == self._steps else (epoch, batch)
        if self._run is not None:
            self._run.superseded = True
            self._run.close()
            self._run = None

    def images_digest(self) -> str:
        """A digest of the image keys, and for shards of their tars (a resumed loader must read the same images,
        laid out alike)."""
        if self._digest is None:
            self._digest = hashlib.sha256("\n".join(self.data.layout_lines()).encode()).hexdigest()[:16]
        return self._digest

    # ---- pipelines --------------------------------------------------------------------------------------

    def _build_pipeline(self, reader, epoch: int, names: tuple[str, ...]):
        """The epoch's DALI pipeline reading with ``reader`` (a ``pipelines.FileReader`` or ``ShardReader`` of this
        rank's images in the epoch's order; see :mod:`.readers`), returning ``names``."""
        raise NotImplementedError

    @property
    def pipeline(self):
        """The current epoch's DALI pipeline (None before the first ``iter()``), e.g. to inspect its graph."""
        return None if self._run is None else self._run.pipeline

    def _check_graph(self) -> None:
        """Defines (not builds) an epoch's pipeline once, at construction: what the graph refuses (e.g. GPU label
        ops from a plugin built without CUDA) is reported by the constructor, not by the first batch."""
        self._build_pipeline(graph_reader(self.data), 0, self._pipeline_names())

    def _pipeline_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.PIPELINE_OUTPUTS[o] for o in self.outputs if o in self.PIPELINE_OUTPUTS)) \
            or ("images",)

    def _host_output(self, name: str, samples: np.ndarray, valid: np.ndarray):
        if name == "rows":
            return torch.from_numpy(self.data.rows[samples].astype(np.int64))
        if name == "keys":
            keys = self.data.keys
            return [keys[i] for i in samples.tolist()]
        if name == "valid":
            return torch.from_numpy(valid.copy())
        raise KeyError(name)

    def _convert(self, data: dict, plan: EpochPlan, index: int):
        """One DALI batch → the loader's tuple (or single value) of outputs."""
        where = plan.batch(index)
        samples, valid = plan.samples[where], plan.valid[where]
        config = self.image_config
        out = []
        for name in self.outputs:
            if name not in self.PIPELINE_OUTPUTS:
                out.append(self._host_output(name, samples, valid))
                continue
            value = data[self.PIPELINE_OUTPUTS[name]]
            if name == "images":
                if config.channels_last:   # DALI wrote NHWC: the NCHW view of it is channels_last, no copy
                    value = value.permute(0, 3, 1, 2)
                if config.dtype == "bfloat16":   # DALI has no bfloat16: one cast, on the batch's device
                    value = value.to(torch.bfloat16)
            elif name in ("labels", "mirror"):
                value = value.reshape(-1).long()
            out.append(value)
        return tuple(out) if len(out) > 1 else out[0]

    def close(self) -> None:
        """Releases the pipelines now (they are also released when the loader is garbage-collected)."""
        for run in [self._run, self._ahead, *self._done]:
            if run is not None:
                run.close()
        self._run, self._ahead, self._done = None, None, []


class _EpochSetter:
    """The ``sampler`` face of a loader: ``set_epoch`` only."""

    def __init__(self, loader: EpochLoader):
        self._loader = weakref.proxy(loader)

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)


__all__ = ["DEVICES", "EpochLoader", "resolve_device", "resolve_seed"]
