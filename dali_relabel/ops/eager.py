"""The label operators run eagerly on torch tensors (DALI's dynamic mode), outside a pipeline.

Used where targets must be pooled for boxes that only exist after the loader, e.g. the regions of a
CutMix patch (:mod:`dali_relabel.mix`), or for one picture (``dali-relabel show``). The pooling math is
the operator's (``fn.relabel.lookup`` + ``fn.relabel.label_pool``), never a second implementation.

Data flow: box corners and store rows are per-sample *argument inputs* of the operators, which DALI
always reads from host memory (like ``fn.slice``'s ``rel_start``); they are tiny ([N, 2] floats, [N]
ints) and the loader returns them as CPU tensors. The label maps never leave the device they are
served from: on the GPU, ``lookup`` gathers them from DALI's device copy of the bank (shared with the
training pipeline's operator), ``label_pool`` reads them there, and the pooled ``[N, C]`` result is
handed to torch through DLPack without a copy. The operators are enqueued on torch's current CUDA
stream, so torch code that uses the result is ordered after them with no synchronization.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def dynamic_api(cuda: bool = False):
    """``nvidia.dali.experimental.dynamic`` with the ``relabel`` operators available.

    Args:
        cuda: the operators' GPU backend is needed (loads the plugin's CUDA library, building it if needed).

    Dynamic mode builds its operator table when it is first imported; if that happened before the plugin
    loaded, :func:`~dali_relabel.ops.plugin.load_plugin` rebuilds it (see ``rebuild_dynamic_operator_table``).
    """
    from .plugin import load_plugin

    load_plugin(cuda=True if cuda else None)
    import nvidia.dali.experimental.dynamic as ndd

    if "label_pool" not in vars(ndd.relabel):
        raise RuntimeError("dali_relabel: the plugin is loaded but DALI's dynamic mode, imported before it, does not "
                           "list its operators (see the warning above): call dali_relabel.load_plugin() before "
                           "importing nvidia.dali.experimental.dynamic")
    return ndd


def host_array(x, dtype) -> np.ndarray:
    """A host array of the given dtype (a GPU tensor costs one small device-to-host copy)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


class BankPooling:
    """Pooled logits of arbitrary boxes of the bank's label maps, on the CPU or a GPU.

    Args:
        bank: a ``LabelBank`` or its directory.
        num_classes: C (default: the bank's).
        transpose_box: pool the transposed box, as relabel_imagenet does (``official_axes``).
        bank_memory: GPU only: "device" (DALI's device copy of the bank) or "host" (pinned host memory).
    """

    def __init__(self, bank, *, num_classes: int | None = None, transpose_box: bool = False,
                 bank_memory: str = "device"):
        from ..store.bank import LabelBank

        if not isinstance(bank, LabelBank):
            bank = LabelBank.open(bank)
        self.bank = bank
        self.num_classes = bank.num_classes if num_classes is None else int(num_classes)
        self.transpose_box, self.bank_memory = transpose_box, bank_memory
        self._contexts: dict = {}

    def _context(self, ndd, device: torch.device):
        """The DALI evaluation context for a CUDA device, bound to torch's current stream there.

        One per (device, stream): a context caches its operator instances, so reusing it keeps the
        operators (and the bank's device copy) alive across calls.
        """
        stream = torch.cuda.current_stream(device)
        key = (device.index, stream.cuda_stream)
        if key not in self._contexts:
            self._contexts[key] = ndd.EvalContext(device_id=device.index, cuda_stream=stream)
        return self._contexts[key]

    def logits(self, rows, starts, ends, device: torch.device | str = "cpu") -> torch.Tensor:
        """Pooled logits ``z`` (``label_pool(output="logits")``) of box ``n`` of map ``rows[n]``.

        Args:
            rows: [N] bank rows (int). starts, ends: [N, 2] normalized (y, x) corners. Host arrays or
                tensors (GPU tensors are copied to the host: the operators read arguments there).
            device: where the maps are read and the result lives.

        Returns:
            [N, C] float32 on ``device``.
        """
        device = torch.device(device)
        ndd = dynamic_api(cuda=device.type == "cuda")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        rows = host_array(rows, np.int64).reshape(-1)
        starts, ends = host_array(starts, np.float32), host_array(ends, np.float32)
        if not len(rows):
            return torch.zeros((0, self.num_classes), dtype=torch.float32, device=device)
        bad = np.flatnonzero((rows < 0) | (rows >= self.bank.num_samples))
        if len(bad):
            # Checked here: DALI's dynamic mode reports operator errors as "asynchronous execution" failures.
            raise IndexError(f"sample {bad[0]}: row {rows[bad[0]]} is outside the bank {self.bank.path}, which holds "
                             f"{self.bank.num_samples} label maps (rows 0..{self.bank.num_samples - 1})")
        # Arguments as dense host batches: the outer dimension is the sample.
        index = ndd.as_batch(torch.from_numpy(rows))
        start, end = ndd.as_batch(torch.from_numpy(starts)), ndd.as_batch(torch.from_numpy(ends))
        op_device = "gpu" if device.type == "cuda" else "cpu"
        pool_args = dict(num_classes=self.num_classes, output="logits", transpose_box=self.transpose_box,
                         # The bank was verified when materialized; checking on the GPU would cost a sync.
                         validate=op_device == "cpu", device=op_device)
        if op_device == "gpu":
            with self._context(ndd, device):
                scores, classes, _ = ndd.relabel.lookup(row=index, bank=str(self.bank.path), device="gpu",
                                                        bank_memory=self.bank_memory)
                z = ndd.relabel.label_pool(scores, classes, rel_start=start, rel_end=end, **pool_args)
                return z.torch()
        scores, classes, _ = ndd.relabel.lookup(row=index, bank=str(self.bank.path), device="cpu")
        return ndd.relabel.label_pool(scores, classes, rel_start=start, rel_end=end, **pool_args).torch()


def pool_maps(scores: Sequence[np.ndarray], classes: Sequence[np.ndarray], starts, ends, *, num_classes: int,
              output: str = "probabilities", temperature: float = 1.0,
              label_type: str = "localized_multi") -> torch.Tensor:
    """``fn.relabel.label_pool`` on host maps (e.g. read from a store), eagerly on the CPU.

    Args:
        scores, classes: per-sample [H, W, K] arrays. starts, ends: [N, 2] normalized (y, x) corners.

    Returns:
        [N, C] float32 CPU tensor.
    """
    ndd = dynamic_api()
    starts, ends = host_array(starts, np.float32), host_array(ends, np.float32)
    return ndd.relabel.label_pool(
        ndd.as_batch([np.ascontiguousarray(s) for s in scores]), ndd.as_batch([np.ascontiguousarray(c) for c in classes]),
        rel_start=ndd.as_batch(torch.from_numpy(starts)), rel_end=ndd.as_batch(torch.from_numpy(ends)),
        num_classes=num_classes, output=output, temperature=temperature, label_type=label_type).torch()


__all__ = ["BankPooling", "dynamic_api", "pool_maps"]
