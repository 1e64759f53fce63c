"""The package's import structure, read from the sources with ``ast`` (nothing is imported).

Two rules (issue 24): no module reaches itself through imports, counting the ones inside functions
(an import hidden in a function is still a circle, it only fails later and elsewhere); and an
import of the package's own modules inside a function says why it is deferred (a ``deferred``
comment on its line or on the line directly above), so that such imports stay the exception.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
PACKAGE = "semcomm_ros"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> source file of every module of ``root/package`` (``__init__`` is the package)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = (package, *path.relative_to(root / package).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _targets(mods: dict[str, Path], module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's modules one import statement imports: the module it names, or for
    ``from pkg import a, b`` the submodules among a, b (and ``pkg`` itself for names that are not
    submodules). The parent packages Python runs on the way are not counted: every submodule that
    its package's ``__init__`` imports would be a circle otherwise."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in mods]
    base = node.module
    if node.level:
        package = module if mods[module].name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")
        if node.level - 1 >= len(parts):
            return []
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, node.module] if node.module else parts)
    if base not in mods:
        return []
    subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in mods]
    return subs + ([base] if len(subs) < len(node.names) else [])


def imports(mods: dict[str, Path], module: str) -> list[tuple[ast.stmt, bool, list[str]]]:
    """(statement, inside a function?, package modules it imports) for every import statement of
    ``module`` that imports one of the package's modules, at any depth."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = _targets(mods, module, child)
                if targets:
                    found.append((child, in_function, targets))
            visit(child, in_function or isinstance(child, FUNCTIONS))

    visit(ast.parse(mods[module].read_text(encoding="utf-8")), False)
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (inside functions too)."""
    return {m: {t for _, _, targets in imports(mods, m) for t in targets} for m in mods}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component that has one, as a path that ends where it starts."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; ~100 modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        start = min(component)
        previous: dict[str, str] = {}  # breadth first from start: the shortest way back to it
        frontier = [start]
        while start not in previous:
            reached = []
            for v in frontier:
                for w in sorted(graph[v] & component):
                    if w not in previous:
                        previous[w] = v
                        reached.append(w)
            frontier = reached
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(previous[path[-1]])
        cycles.append(path[::-1])
    return sorted(cycles)


def _file(mods: dict[str, Path], module: str) -> str:
    """The module's file relative to the folder that holds the package."""
    return "/".join(module.split(".")[:-1] + [mods[module].name] if mods[module].name != "__init__.py"
                    else module.split(".") + ["__init__.py"])


def undeferred(mods: dict[str, Path]) -> list[str]:
    """``file:line: statement`` of every in-function import of the package's own modules without a
    ``deferred`` comment on one of its lines or on the line directly above (unless that line is
    part of another import: each import gives its own reason)."""
    bad = []
    for module, path in mods.items():
        found = [(node, in_function) for node, in_function, _ in imports(mods, module)]
        if not any(in_function for _, in_function in found):
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        comments = {tok.start[0]: tok.string for tok in tokens if tok.type == tokenize.COMMENT}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        import_lines = {n for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                        for n in range(node.lineno, node.end_lineno + 1)}
        for node, in_function in found:
            own = range(node.lineno, node.end_lineno + 1)
            above = node.lineno - 1
            if not in_function or any("deferred" in comments.get(n, "") for n in own) or (
                    above not in import_lines and "deferred" in comments.get(above, "")):
                continue
            bad.append(f"{_file(mods, module)}:{node.lineno}: {ast.unparse(node)}")
    return bad


# -- the checker on a made-up package ----------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path, "pkg")


def test_checker_counts_function_level_relative_and_submodule_imports(tmp_path):
    mods = _package(tmp_path, {
        "__init__.py": "from . import a\n",  # a package importing its submodules is no circle
        "a.py": "from . import b\nfrom .sub import c as cc\n",
        "b.py": "def f():\n    import pkg.sub.c\n",
        "sub/__init__.py": "from .c import NAME\n",
        "sub/c.py": "import os\nfrom .. import d\nNAME = 1\n",
        "d.py": "from pkg.sub import NAME\n",
    })
    graph = import_graph(mods)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.sub.c"}, "pkg.b": {"pkg.sub.c"},
                     "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.d"}, "pkg.d": {"pkg.sub"}}
    assert find_cycles(graph) == [["pkg.d", "pkg.sub", "pkg.sub.c", "pkg.d"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [
        ["a", "b", "c", "a"], ["e", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_checker_finds_a_circle_hidden_in_a_function(tmp_path):
    mods = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "from .high import HEADS\n",
        "high.py": "HEADS = 8\n\ndef build():\n    from .low import thing  # deferred: hides the circle\n",
    })
    assert find_cycles(import_graph(mods)) == [["pkg.high", "pkg.low", "pkg.high"]]


def test_checker_wants_a_deferred_comment_per_function_level_import(tmp_path):
    mods = _package(tmp_path, {
        "__init__.py": "",
        "x.py": "",
        "y.py": "import os\n\n\ndef f():\n"
                "    # deferred: a reason\n    from . import x\n"
                "    from .x import A  # deferred: a reason\n"
                "    from .x import B  # deferred\n    from .x import C\n"
                "    import os, json\n\n    from .x import D\n",
    })
    assert undeferred(mods) == ["pkg/y.py:9: from .x import C", "pkg/y.py:12: from .x import D"]


# -- the package ---------------------------------------------------------------------------------
def test_no_import_cycles():
    cycles = find_cycles(import_graph(modules(SRC, PACKAGE)))
    assert not cycles, "import circles (imports inside functions count):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_package_imports_say_why_they_are_deferred():
    bad = undeferred(modules(SRC, PACKAGE))
    assert not bad, (
        "imports of semcomm_ros modules inside functions: move each to the top of its file, or say why it is "
        "deferred in a `# deferred: ...` comment on its line or the line above:\n" + "\n".join(bad)
    )
