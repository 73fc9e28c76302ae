"""Package re-exports resolved on first access (PEP 562), so that importing a package stays cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable  # not typing: importing it costs milliseconds at `import dali_relabel`


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names live in submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it (imported when the name is first read; the value is
            then cached in the package).

    Usage, in ``__init__.py``: ``__getattr__, __dir__ = lazy_exports(__name__, {"LabelStore": "pkg.store"})``.
    """
    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *exports])

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
