"""What a build prints while it runs: one line per finished step with its time, a live line on a terminal.

    dali_relabel: compiling the DALI plugin's CPU library for DALI 2.4.0: 7 steps, once (cached in ~/.cache/...)
    dali_relabel:   [1/7] lookup.cc                  2.0 s
    dali_relabel:   [2/7] label_pool.cc              2.3 s
    ...
    dali_relabel:   [7/7] link libdali_relabel.so    0.2 s
    dali_relabel: built in 14.8 s

On a terminal a spinner line below them names the steps still running and their time so far; it is erased
before each finished line and at the end, so logs (not a terminal) hold only the lines above.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import TextIO

PREFIX = "dali_relabel:"


class BuildProgress:
    """Reports the steps of one build.

    Args:
        title: the header line (what is built, where).
        total: the number of steps.
        verbose: print anything at all.
        stream: where (default stderr).
        live: draw the spinner line (default: when ``stream`` is a terminal).
    """

    def __init__(self, title: str, total: int, *, verbose: bool = True, stream: TextIO | None = None,
                 live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.verbose, self.total = verbose, total
        self.live = verbose and (live if live is not None else bool(getattr(self.stream, "isatty", lambda: False)()))
        self.t0 = time.perf_counter()
        self.finished_steps = 0
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._print(f"{PREFIX} {title}")
        if self.live:
            self._thread = threading.Thread(target=self._spin, name="dali_relabel-build-progress", daemon=True)
            self._thread.start()

    def _print(self, line: str) -> None:
        if self.verbose:
            with self._lock:
                self._erase_live_line()
                print(line, file=self.stream, flush=True)

    def _erase_live_line(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")

    def _spin(self) -> None:
        for frame in itertools.cycle("|/-\\"):
            if self._stop.wait(0.2):
                return
            now = time.perf_counter()
            with self._lock:
                running = ", ".join(f"{name} {now - t:.0f} s" for name, t in self._running.items())
                self._erase_live_line()
                self.stream.write(f"{PREFIX} {frame} [{self.finished_steps}/{self.total}] {running}")
                self.stream.flush()

    def start(self, name: str) -> None:
        with self._lock:
            self._running[name] = time.perf_counter()

    def finish(self, name: str, failed: bool = False) -> None:
        with self._lock:
            seconds = time.perf_counter() - self._running.pop(name, self.t0)
            self.finished_steps += 1
            n = self.finished_steps
        status = "FAILED after" if failed else ""
        self._print(f"{PREFIX}   [{n}/{self.total}] {name:<28} {status}{' ' if failed else ''}{seconds:.1f} s")

    def close(self, ok: bool = True) -> float:
        """Stops the live line and prints the total time (if ``ok``); returns the seconds since the start."""
        elapsed = time.perf_counter() - self.t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if ok:
            self._print(f"{PREFIX} built in {elapsed:.1f} s")
        elif self.live:
            with self._lock:
                self._erase_live_line()
                self.stream.flush()
        return elapsed


__all__ = ["BuildProgress"]
