"""The layering the docs promise: the core never imports the testbed, no import cycles, a thin CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import erasekit

SRC = Path(erasekit.__file__).resolve().parent
PLUGINS = ("erasekit.testbed", "erasekit.cli")  # the testbed plugin and the CLI may import anything


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every erasekit module ``name`` imports, anywhere in the file (function bodies included),
    except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # "from erasekit.cli import args" imports the module erasekit.cli.args
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_core_imports_nothing_from_the_testbed_statically():
    bad = {m: sorted(d for d in deps if d.startswith("erasekit.testbed"))
           for m, deps in _graph().items() if not m.startswith(PLUGINS)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_core_modules_load_without_the_testbed():
    code = ("import erasekit.erasure, erasekit.evaluation, erasekit.redteam, erasekit.report, sys; "
            "assert not [m for m in sys.modules if m.startswith('erasekit.testbed')]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_cycle_finder_sees_a_lazy_import_cycle(tmp_path):
    """The walker counts imports inside functions (the way the old CLI hid its loop)."""
    modules = {"erasekit.a": tmp_path / "a.py", "erasekit.b": tmp_path / "b.py"}
    modules["erasekit.a"].write_text("def f():\n    from erasekit.b import g\n")
    modules["erasekit.b"].write_text("from erasekit.a import f\n")
    assert _imports("erasekit.a", modules["erasekit.a"], modules) == {"erasekit.b"}
    assert _imports("erasekit.b", modules["erasekit.b"], modules) == {"erasekit.a"}


def test_cli_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SRC / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) <= 250, sizes
