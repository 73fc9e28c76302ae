"""``fn.relabel``, ``ops.relabel`` and ``ndd.relabel`` exist before the plugin is loaded; first use loads it.

``import dali_relabel`` calls :func:`install`, which imports nothing from DALI (that would cost ~0.5 s):

* for each of DALI's API modules already imported (``nvidia.dali.fn``, ``nvidia.dali.ops``,
  ``nvidia.dali.experimental.dynamic``) it sets a :class:`RelabelNamespace` as its ``relabel`` attribute;
* for those not imported yet, a finder on ``sys.meta_path`` sets it right after the module has executed
  (then gives the module its own loader back), so the import order does not matter.

A namespace is a module named as DALI names its op modules (``nvidia.dali.fn.relabel``), also registered in
``sys.modules``. Reading one of the operators' names from it (``fn.relabel.label_pool``; the names come from
the ``DALI_SCHEMA`` lines in ``csrc/``) calls :func:`dali_relabel.ops.load_plugin`; any other name raises
AttributeError without building anything. When the plugin loads, DALI's module creation
(``plugin_manager.load_library`` → ``ops.Reload`` → ``nvidia.dali.internal.get_submodule``) looks up
``relabel``, finds a module and fills it with its generated operators exactly as it would fill a module of
its own; while it does, the namespace answers AttributeError to DALI's ``hasattr`` checks
(:func:`~dali_relabel.ops.plugin.loading_in_this_thread`). After loading, ``fn.relabel.label_pool`` is DALI's
own function.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings

ATTRIBUTE = "relabel"
# DALI module -> the operator names its `relabel` namespace offers: functions, or classes (the class API).
TARGETS = {
    "nvidia.dali.fn": "functions",
    "nvidia.dali.ops": "classes",
    "nvidia.dali.experimental.dynamic": "functions",
}


def operator_names(kind: str) -> tuple[str, ...]:
    from . import sources  # on first use, not at `import dali_relabel`

    return sources.operator_functions() if kind == "functions" else sources.operator_classes()


class RelabelNamespace(types.ModuleType):
    """A DALI op module for the ``relabel`` operators that loads the plugin when an operator is first read."""

    def __init__(self, name: str, kind: str):
        super().__init__(name, f"dali_relabel operators ({name}); the plugin loads on first use.")
        self.__dict__["_operator_kind"] = kind

    def __getattr__(self, name: str):
        names = operator_names(self.__dict__["_operator_kind"])
        if name in names:
            from .plugin import load_plugin, loading_in_this_thread

            if not loading_in_this_thread():  # DALI probing the module while it fills it: not there yet
                load_plugin()
                if name in self.__dict__:
                    return self.__dict__[name]
        hint = f" (dali_relabel operators: {', '.join(names)})" if not name.startswith("__") else ""
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}{hint}")

    def __dir__(self):
        return sorted({*self.__dict__, *operator_names(self.__dict__["_operator_kind"])} - {"_operator_kind"})


def _install_on(module: types.ModuleType) -> None:
    """Sets ``module.relabel`` unless DALI already created it (the plugin was loaded before)."""
    if ATTRIBUTE in vars(module):
        return
    namespace = RelabelNamespace(f"{module.__name__}.{ATTRIBUTE}", TARGETS[module.__name__])
    sys.modules.setdefault(namespace.__name__, namespace)
    setattr(module, ATTRIBUTE, namespace)


class _InstallAfterExec:  # a loader (importlib.abc is not imported: it costs 10 ms)
    """Runs a DALI module's own loader, then installs the namespace on it."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # anything else an import machinery may ask of a loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader  # the module keeps no trace of this wrapper
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        try:
            _install_on(module)
        except Exception as e:  # never break DALI's own import: the explicit load_plugin() still works
            warnings.warn(f"dali_relabel: could not add {module.__name__}.{ATTRIBUTE} ({e!r}); call "
                          "dali_relabel.load_plugin() before using the operators", RuntimeWarning, stacklevel=2)
        _Finder.remove_if_done()


class _Finder:  # a meta path finder
    """Finds DALI's API modules with the other finders and wraps their loaders in :class:`_InstallAfterExec`."""

    _resolving = threading.local()

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS or getattr(self._resolving, "active", False):
            return None
        self._resolving.active = True  # another finder may call importlib.util.find_spec itself
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._resolving.active = False
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _InstallAfterExec(spec.loader)
        return spec

    @staticmethod
    def remove_if_done() -> None:
        if all(name in sys.modules for name in TARGETS):
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def install() -> None:
    """Gives DALI's API modules their ``relabel`` namespace: now for those imported, on import for the others."""
    for name in TARGETS:
        if name in sys.modules:
            _install_on(sys.modules[name])
    if not all(name in sys.modules for name in TARGETS) and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


__all__ = ["RelabelNamespace", "TARGETS", "install", "operator_names"]
