"""Finds images that DALI's CPU decoder cannot decode, before a training run trips on them.

Each image goes through ``fn.relabel.check_image`` (complete file of a known format: catches JPEGs
truncated inside their image data, which the decoder would silently fill with grey) and then
``fn.decoders.image`` on the CPU.

A DALI pipeline that fails is no longer usable and its error does not always name the sample,
so images are decoded in batches and a failing batch is bisected, with a fresh pipeline after
each failure, down to the culprits: cost ≈ one decode per image plus O(log batch) rebuilds per
bad image.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class _Decoder:
    """A CPU pipeline: encoded bytes in (external source), decoded RGB out (discarded)."""

    def __init__(self, batch_size: int, num_threads: int):
        self.batch_size, self.num_threads = batch_size, num_threads
        self.pipe = None

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        from .plugin import load_plugin

        load_plugin()  # fn.relabel.check_image

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads, device_id=None,
                      exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
        def pipe():
            data = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            return fn.decoders.image(fn.relabel.check_image(data), device="cpu", output_type=types.RGB)

        self.pipe = pipe()
        self.pipe.build()

    def error(self, encoded: Sequence[np.ndarray]) -> str | None:
        """None if every image in the batch decodes, else DALI's message (the pipeline is then rebuilt)."""
        if self.pipe is None:
            self._build()
        try:
            self.pipe.feed_input("encoded", list(encoded))
            self.pipe.run()
            return None
        except Exception as e:  # DALI raises RuntimeError; any failure means "not decodable here"
            self.pipe = None
            return _reason(str(e)) or type(e).__name__


def _reason(message: str) -> str:
    """The informative part of a DALI pipeline error: what follows "encountered:", minus boilerplate."""
    tail = message.split("encountered:", 1)[-1]
    lines = [ln.strip() for ln in tail.splitlines()
             if ln.strip() and "pipeline object is no longer valid" not in ln and "Critical error" not in ln]
    return " ".join(lines).rstrip(" :")


def undecodable_images(paths: Sequence[str | Path], *, batch_size: int = 32, num_threads: int = 2,
                       progress: bool = True) -> list[tuple[str, str]]:
    """Decodes every image with DALI's CPU decoder and returns the ones that fail.

    Args:
        paths: image files.
        batch_size: images decoded per pipeline run.
        num_threads: DALI CPU threads.
        progress: show a progress bar.

    Returns:
        ``[(path, reason)]`` for each image that cannot be read or decoded, in input order.
    """
    names = [str(p) for p in paths]
    return _undecodable(names, lambda i: Path(names[i]).read_bytes(), empty="empty file", batch_size=batch_size,
                        num_threads=num_threads, progress=progress)


def _bisect(decoder: _Decoder, items: list[tuple[str, np.ndarray]], bad: list[tuple[str, str]]) -> None:
    if not items:
        return
    error = decoder.error([data for _, data in items])
    if error is None:
        return
    if len(items) == 1:
        bad.append((items[0][0], f"cannot be decoded by DALI's CPU decoder ({error})"))
        return
    mid = len(items) // 2
    _bisect(decoder, items[:mid], bad)
    _bisect(decoder, items[mid:], bad)


def undecodable_members(names: Sequence[str], read, *, batch_size: int = 32, num_threads: int = 2,
                        progress: bool = True) -> list[tuple[str, str]]:
    """As :func:`undecodable_images`, for encoded images that are not files of their own (e.g. members of tar
    shards): image ``i`` is named ``names[i]`` and its bytes are ``read(i)``.

    Returns:
        ``[(name, reason)]`` for each image that cannot be read or decoded, in input order.
    """
    return _undecodable(list(names), read, empty="empty member", batch_size=batch_size, num_threads=num_threads,
                        progress=progress)


def _undecodable(names: list[str], read, *, empty: str, batch_size: int, num_threads: int,
                 progress: bool) -> list[tuple[str, str]]:
    """Both public checks: reads image ``i`` (``names[i]``) with ``read(i)`` a batch at a time, decodes the batch
    with DALI's CPU decoder, and bisects a failing batch down to its bad images."""
    from tqdm import tqdm

    decoder = _Decoder(batch_size, num_threads)
    bad: list[tuple[str, str]] = []
    bar = tqdm(total=len(names), unit="img", desc="decoding images (DALI CPU)", disable=not progress, file=sys.stderr)
    for start in range(0, len(names), batch_size):
        encoded = []
        for i in range(start, min(start + batch_size, len(names))):
            try:
                data = read(i)
            except OSError as e:
                bad.append((names[i], f"cannot be read: {e.strerror or e}"))
                continue
            if not data:
                bad.append((names[i], empty))
                continue
            encoded.append((names[i], np.frombuffer(data, np.uint8)))
        _bisect(decoder, encoded, bad)
        bar.update(min(batch_size, len(names) - start))
    bar.close()
    order = {n: i for i, n in enumerate(names)}
    return sorted(bad, key=lambda item: order[item[0]])
