"""The package's shape (docs/ARCHITECTURE.md): imports run one way, no cycles, cheap imports, one way to the pipelines."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dali_relabel

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "dali_relabel"
PIPELINES = REPO / "pipelines"

# Layers, lowest first: a module may import from its own layer and the layers below, never above.
LAYERS = {
    "dali_relabel.fs": 0, "dali_relabel.distributed": 0, "dali_relabel.normalization": 0,
    "dali_relabel.image_folder": 0, "dali_relabel.lazy_exports": 0, "dali_relabel.config": 0,
    "dali_relabel.augment_spec": 0, "dali_relabel.errors": 0, "dali_relabel._version": 0, "dali_relabel.shards": 0,
    "dali_relabel.store": 1,
    "dali_relabel.ops": 2,
    "dali_relabel.pipelines": 3,
    "dali_relabel.loader": 4, "dali_relabel.mix": 4, "dali_relabel.training": 4, "dali_relabel.annotate": 4,
    "dali_relabel.verify": 4, "dali_relabel.verify_shards": 4, "dali_relabel.crop_stats": 4, "dali_relabel.testing": 4,
    "dali_relabel.metrics": 4, "dali_relabel.label_view": 4,
    "dali_relabel.timm": 4,   # the timm integration (loader factory, Mixup): optional, needs timm
    "dali_relabel.cli": 5, "dali_relabel.annotate.__main__": 5,  # entry points: the command line
    "dali_relabel": 6,  # the package's own __init__ (lazy re-exports)
}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (pipelines/ is dali_relabel.pipelines)."""
    out = {}
    for root, prefix in ((PACKAGE, "dali_relabel"), (PIPELINES, "dali_relabel.pipelines")):
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((prefix, *rel))] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its code (functions included; TYPE_CHECKING excluded)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(base: str, names: list[str]) -> None:
        for n in names:
            if f"{base}.{n}" in modules:
                found.add(f"{base}.{n}")       # `from pkg import module`
            elif base in modules:
                found.add(base)                  # `from module import symbol`
        if not names and base in modules:
            found.add(base)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    for i in range(len(parts), 0, -1):  # the deepest package module named
                        if ".".join(parts[:i]) in modules:
                            found.add(".".join(parts[:i]))
                            break
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    pkg = name.split(".") if is_package else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                resolve(base, [a.name for a in child.names])
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_every_module_has_a_layer():
    for module in _modules():
        assert any(module == p or module.startswith(p + ".") for p in LAYERS), f"{module}: add it to LAYERS"


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_run_one_way():
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, targets in _graph().items() for b in targets if _layer(b) > _layer(a)]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_cycles_and_upward_imports(tmp_path, monkeypatch):
    """The two tests above can fail: a planted cycle and a planted upward import are both found."""
    pkg = tmp_path / "dali_relabel"
    (pkg / "store").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "fs.py").write_text("from .store import bank\n")            # layer 0 -> layer 1: upward
    (pkg / "store" / "__init__.py").write_text("")
    (pkg / "store" / "bank.py").write_text("def f():\n    from . import label_store\n")
    (pkg / "store" / "label_store.py").write_text("from .bank import f\n")  # bank <-> label_store
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    monkeypatch.setattr(sys.modules[__name__], "PIPELINES", tmp_path / "none")
    with pytest.raises(AssertionError, match="dali_relabel.store.bank"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="dali_relabel.fs .layer 0. imports dali_relabel.store.bank"):
        test_imports_run_one_way()


def _run_without_compilers(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs Python code in a fresh process with no compiler reachable and an empty plugin cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("CXX", "CC", "CUDA_HOME", "CUDA_PATH")}
    env.update(PATH=str(tmp_path / "empty-bin"), DALI_RELABEL_CACHE=str(tmp_path / "cache"),
               DALI_RELABEL_NVCC="none")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_store_info_and_verify_need_no_compiler(tmp_path):
    from store_util import create_store, fill

    store = create_store(tmp_path / "s.zarr", n=20, block_size=8)
    fill(store)
    code = """
        import sys
        from dali_relabel.store import LabelStore
        import dali_relabel
        assert "nvidia.dali" not in sys.modules and "torch" not in sys.modules, sorted(sys.modules)
        store = LabelStore.open(sys.argv[1])
        assert store.num_samples == 20
        from dali_relabel.cli import main
        assert main(["info", sys.argv[1]]) == 0
        assert main(["verify", "--quiet", sys.argv[1]]) == 0
        assert dali_relabel.loaded_plugin() is None
        print("OK")
    """
    r = _run_without_compilers(code, tmp_path, str(store.url))
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.so"))


def test_the_plugin_loads_on_first_use_of_an_operator(tmp_path):
    """Importing the package compiles nothing; building a pipeline that uses fn.relabel does (once, cached)."""
    code = """
        import dali_relabel, sys
        assert dali_relabel.loaded_plugin() is None
        from dali_relabel.pipelines import relabel_targets
        assert dali_relabel.loaded_plugin() is None      # importing the pipelines builds nothing either
        from nvidia.dali import fn, pipeline_def
        @pipeline_def(batch_size=1, num_threads=1, device_id=None)
        def pipe():
            return fn.external_source(lambda: [__import__("numpy").zeros((), "int32")], batch=True)
        pipe().build()
        assert dali_relabel.loaded_plugin() is None       # a pipeline without relabel ops needs no plugin
        print("OK")
    """
    r = _run_without_compilers(code, tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


def test_pipelines_have_one_import_path():
    """The definitions live in the top-level pipelines/ folder and are imported as dali_relabel.pipelines only."""
    import dali_relabel.pipelines as pipelines

    assert Path(pipelines.__file__).resolve() == PIPELINES / "__init__.py"
    # Outside the repository (where the working directory is not on sys.path), no top-level `pipelines`.
    code = "import importlib.util; print(importlib.util.find_spec('pipelines'))"
    r = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "None", r.stdout + r.stderr
    for path in PIPELINES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                pytest.fail(f"{path}: relative import out of the pipelines package ({'.' * node.level}"
                            f"{node.module}); import dali_relabel.<module> instead")


def test_public_names_resolve():
    for name in dali_relabel.__all__:
        assert getattr(dali_relabel, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dali_relabel.nope  # noqa: B018
