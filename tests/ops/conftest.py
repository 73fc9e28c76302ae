"""Fixtures of the operator tests: the cudasim drivers (built once per session, cached on disk)."""

from __future__ import annotations

import pytest

from cudasim import harness


@pytest.fixture(scope="session")
def cudasim_driver() -> harness.Binary:
    """The plain cudasim driver: the project's kernels and RunImpl code on the CPU."""
    return harness.build("plain")


@pytest.fixture(scope="session")
def cudasim_tsan_driver() -> harness.Binary:
    """The same driver built with ThreadSanitizer."""
    return harness.build("tsan")
