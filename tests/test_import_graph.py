"""The layering of ``toprec`` (the design's "Layers"): no import cycles, nothing imports the CLI.

The graph is read from the source with :mod:`ast`, not by importing anything,
so an import hidden in a function body counts like one at the top of a file:
a cycle through a lazy import is still a cycle in the design, it only fails
later. Edges:

* ``import a.b`` -> module ``a.b``; ``from a.b import c`` -> ``a.b.c`` when
  that is a module (or package), otherwise ``a.b``; relative imports are
  resolved against the importing module's package.
* A package is its ``__init__``: importing it is an edge to the package, and
  an ``__init__`` re-exporting from its submodules has edges to them.
* ``import a.b`` runs ``a/__init__`` too, but that is not an edge: every
  submodule would otherwise depend on its package's re-exports.
* Only modules of the package itself are nodes; everything else is ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "toprec"
CLI = f"{ROOT}.cli"
#: modules that run the command line (``python -m toprec``): they may import it
ENTRY_POINTS = {f"{ROOT}.__main__"}


def module_files(src: Path, root: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``src/root`` (packages as their ``__init__``)."""
    out = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(files: dict[str, Path], name: str) -> bool:
    return files[name].name == "__init__.py"


def _known(files: dict[str, Path], name: str) -> str | None:
    """``name`` itself when it is one of our modules, else its nearest enclosing one (None outside)."""
    while name:
        if name in files:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(src: Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ``root`` it imports (anywhere in its body)."""
    files = module_files(src, root)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if _is_package(files, name) else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if alias.name != "*" and sub in files else base)
            for target in targets:
                mod = _known(files, target)
                if mod is not None and mod != name:
                    graph[name].add(mod)
    return graph


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (each module in one reaches every other)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, succ = work[-1]
            advanced = False
            for nxt in succ:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.add(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    components.append(comp)
    return sorted(components, key=min)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path of modules, first == last) per tangle: the shortest through its first module."""
    return [_cycle_in(graph, comp) for comp in tangles(graph)]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first, inside the component)."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & comp):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in parent:
                    parent[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle in the component {sorted(comp)}")  # pragma: no cover


def assert_no_cycles(graph: dict[str, set[str]]) -> None:
    lines = []
    for comp in tangles(graph):
        lines.append("  " + " -> ".join(_cycle_in(graph, comp)))
        if len(comp) > len(_cycle_in(graph, comp)) - 1:
            lines.append(f"    (the whole tangle: {', '.join(sorted(comp))})")
    assert not lines, "import cycles:\n" + "\n".join(lines)


def _under(name: str, top: str) -> bool:
    """``top`` itself (a module or a package) or anything under it."""
    return name == top or name.startswith(top + ".")


def assert_cli_not_imported(graph: dict[str, set[str]], cli: str = CLI, entry_points=ENTRY_POINTS) -> None:
    """No module outside ``cli`` (but the entry points) imports ``cli`` or anything under it."""
    offenders = sorted(
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if not _under(mod, cli) and mod not in entry_points
        for dep in deps
        if _under(dep, cli)
    )
    assert not offenders, "modules outside the CLI importing it:\n" + "\n".join("  " + o for o in offenders)


# ------------------------------------------------------------------- tests
def test_the_graph_sees_the_package():
    graph = import_graph()
    assert len(graph) > 40 and f"{ROOT}.data.dataset" in graph and f"{ROOT}.models.registry" in graph
    # a re-export from a package's __init__ is an edge from the package to the submodule
    assert f"{ROOT}.data.dataset" in graph[f"{ROOT}.data"]
    assert f"{ROOT}.models.base" in graph[f"{ROOT}.models"]


def test_no_import_cycles():
    assert_no_cycles(import_graph())


def test_nothing_below_the_cli_imports_it():
    assert_cli_not_imported(import_graph())


# ----------------------------------------------- the checks themselves, on made-up packages
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_in_a_synthetic_package_is_found(tmp_path):
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n",
            "pkg/b.py": "def f():\n    from .a import thing  # lazy: still an edge\n",
            "pkg/c.py": "from .a import x\n",
        },
    )
    graph = import_graph(src, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
    with pytest.raises(AssertionError, match=r"pkg\.a -> pkg\.b -> pkg\.a"):
        assert_no_cycles(graph)


def test_synthetic_package_edges_and_a_longer_cycle(tmp_path):
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from .sub import Thing\nimport os\n",
            "pkg/sub/__init__.py": "from .impl import Thing\n",
            "pkg/sub/impl.py": "from .. import helpers\nfrom ..helpers import name\nimport pkg.top\n",
            "pkg/helpers.py": "from pkg import top\n",
            "pkg/top.py": "import pkg.sub.impl as impl\nfrom . import __version__\n",
        },
    )
    graph = import_graph(src, "pkg")
    assert graph["pkg"] == {"pkg.sub"}
    assert graph["pkg.sub"] == {"pkg.sub.impl"}
    assert graph["pkg.sub.impl"] == {"pkg.helpers", "pkg.top"}
    assert graph["pkg.helpers"] == {"pkg.top"}
    assert graph["pkg.top"] == {"pkg.sub.impl", "pkg"}  # a name that is not a submodule: the package
    assert tangles(graph) == [{"pkg", "pkg.sub", "pkg.sub.impl", "pkg.top", "pkg.helpers"}]
    # the shortest way round from the tangle's first module (not the longer one through helpers)
    assert find_cycles(graph) == [["pkg", "pkg.sub", "pkg.sub.impl", "pkg.top", "pkg"]]
    with pytest.raises(AssertionError, match=r"the whole tangle: pkg, pkg\.helpers, pkg\.sub"):
        assert_no_cycles(graph)


@pytest.mark.parametrize("layout", ["module", "package"])
def test_cli_imported_from_below_is_found(tmp_path, layout):
    cli = {
        "module": {"pkg/cli.py": "from .lib import f\n"},
        "package": {"pkg/cli/__init__.py": "from .main import main\n", "pkg/cli/main.py": "from ..lib import f\n"},
    }
    src = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/__main__.py": "from .cli import main\n",
            "pkg/lib.py": "def f():\n    from .cli import main\n",
            **cli[layout],
        },
    )
    graph = import_graph(src, "pkg")
    with pytest.raises(AssertionError, match=r"pkg\.lib -> pkg\.cli"):
        assert_cli_not_imported(graph, "pkg.cli", {"pkg.__main__"})
    (tmp_path / "pkg" / "lib.py").write_text("def f():\n    return 1\n")
    assert_cli_not_imported(import_graph(src, "pkg"), "pkg.cli", {"pkg.__main__"})  # __main__ may
