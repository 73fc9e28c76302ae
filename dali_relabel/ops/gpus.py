"""The compute capabilities of the GPUs this process can see, without initializing CUDA in it.

The CUDA driver is asked (``cuDeviceGetAttribute``, through ctypes) in a short child process. Asking in this
process (torch.cuda, DALI's device count, the driver directly) would initialize CUDA here, and DALI then refuses
to fork the workers of a parallel ``external_source`` ("Cannot fork a process when the CUDA has been
initialized"); nor is torch imported just for this (about 1.5 s). The child honours ``CUDA_VISIBLE_DEVICES``
like any CUDA program, and sees no GPU where there is no driver.
"""

from __future__ import annotations

import functools
import subprocess
import sys

# Prints one line per visible device: major * 10 + minor (90 for an H100/H200). Nothing without a driver or a GPU.
_QUERY = """
import ctypes, sys
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError:
    sys.exit(0)
if cuda.cuInit(0) != 0:
    sys.exit(0)
count = ctypes.c_int(0)
if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
    sys.exit(0)
MAJOR, MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}
for i in range(count.value):
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if (cuda.cuDeviceGet(ctypes.byref(dev), i) == 0
            and cuda.cuDeviceGetAttribute(ctypes.byref(major), MAJOR, dev) == 0
            and cuda.cuDeviceGetAttribute(ctypes.byref(minor), MINOR, dev) == 0):
        print(major.value * 10 + minor.value)
"""


@functools.cache
def visible_archs() -> tuple[int, ...]:
    """SM versions of the visible GPUs, sorted and deduplicated (``()`` without a GPU or a driver)."""
    try:
        out = subprocess.run([sys.executable, "-I", "-S", "-c", _QUERY], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(sorted({int(line) for line in out.split() if line.isdigit()}))


__all__ = ["visible_archs"]
