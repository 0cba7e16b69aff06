"""No import cycles between the modules of app/ (issue 14).

Every module is read with `ast`, never imported. An edge A → B is any place A names B:
`import B` or `from B import x`, at the top, inside a function, under `if
TYPE_CHECKING:` or in a `try`; relative imports resolved; `from app.x import y` is an
edge to `app.x.y` when y is a module of app, else to `app.x`; `importlib.import_module`
with a literal name counts too. Python runs a package's `__init__` before its
submodules, but that implicit step is no edge: only what a module names is.

A failure names each cycle as a path of modules with the file:line of every import
on it, so the fix is plain."""
import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_files(root: Path, package: str = "app") -> dict[str, Path]:
    """Every module under root/package, by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known(name: str, modules) -> str | None:
    """The longest prefix of a dotted name that is one of the modules."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules) -> dict[str, list[int]]:
    """The modules this one names, each with the lines that name it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, list[int]] = {}

    def add(target: str | None, line: int) -> None:
        if target and target != name:
            found.setdefault(target, []).append(line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_known(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else _known(base, modules), node.lineno)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            add(_known(node.args[0].value, modules), node.lineno)
    return found


def import_graph(root: Path, package: str = "app") -> dict[str, dict[str, list[int]]]:
    modules = module_files(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph) -> list[list[str]]:
    """Groups of modules that all reach each other (Tarjan, iterative), each sorted;
    a group of one module is no cycle (a module never counts as importing itself)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(groups)


def shortest_cycle(graph, group: list[str]) -> list[str]:
    """One shortest cycle through the group's first module, as a path that ends where
    it starts."""
    start, members = group[0], set(group)
    came_from = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return list(reversed(path)) + [start]
            if target in members and target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"{group} is not a cycle")


def describe(graph, files, group: list[str], root: Path = ROOT) -> str:
    """One shortest cycle of the group, then any other import between its modules."""
    def where(source, target):
        return ", ".join(f"{files[source].relative_to(root)}:{line}"
                         for line in sorted(set(graph[source][target])))

    path = shortest_cycle(graph, group)
    lines = [path[0]] + [f"  -> {target}  ({where(source, target)})"
                         for source, target in zip(path, path[1:])]
    shown = set(zip(path, path[1:]))
    others = [f"    {source} -> {target}  ({where(source, target)})"
              for source in group for target in sorted(graph[source])
              if target in group and (source, target) not in shown]
    if others:
        lines += ["  and inside the same group:"] + others
    return "\n".join(lines)


def test_no_import_cycles_in_app():
    files = module_files(ROOT)
    graph = import_graph(ROOT)
    groups = strongly_connected(graph)
    assert not groups, (f"{len(groups)} import cycle(s) in app/:\n\n"
                        + "\n\n".join(describe(graph, files, group) for group in groups))


def test_the_scan_sees_every_kind_of_import(tmp_path):
    """The scan on a small package: each kind of import closes one cycle, and plain
    one-way imports close none."""
    sources = {
        "pkg/__init__.py": "",
        # top level, and `from pkg import b` naming a submodule
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "import pkg.a\n",
        # inside a function, relative
        "pkg/c.py": "def f():\n    from .d import x\n",
        "pkg/d.py": "x = 1\nfrom pkg import c\n",
        # under TYPE_CHECKING, parent-relative, and a literal import_module
        "pkg/sub/__init__.py": "from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from ..e import y\n",
        "pkg/e.py": "import importlib\ny = importlib.import_module('pkg.sub')\n",
        # a blueprint package whose routes import it, and that does not import them
        "pkg/area/__init__.py": "bp = object()\n",
        "pkg/area/routes.py": "from pkg.area import bp\nfrom . import forms\n",
        "pkg/area/forms.py": "import os\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")

    assert graph["pkg.a"] == {"pkg.b": [1]}
    assert graph["pkg.c"] == {"pkg.d": [2]}
    assert graph["pkg.d"] == {"pkg.c": [2]}
    assert graph["pkg.sub"] == {"pkg.e": [3]}
    assert graph["pkg.e"] == {"pkg.sub": [2]}
    assert graph["pkg.area.routes"] == {"pkg.area": [1], "pkg.area.forms": [2]}
    assert strongly_connected(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"],
                                         ["pkg.e", "pkg.sub"]]
    assert describe(graph, module_files(tmp_path, "pkg"), ["pkg.c", "pkg.d"], tmp_path) == (
        "pkg.c\n  -> pkg.d  (pkg/c.py:2)\n  -> pkg.c  (pkg/d.py:2)")


def test_the_app_loads_heavy_libraries_only_when_they_are_used():
    """Every process imports the app, the ingest's storing process too, whose memory
    has a limit (SPEC §10): PDF fonts and QR codes are imported where they are drawn,
    the stripe SDK when Stripe is first talked to, Alembic (with Mako and Pygments) by
    migrations and `flask db`, HTTP clients when a webhook or bid request is sent,
    Celery only where jobs go to Celery workers (TASK_MODE "celery"), and the list of
    disposable email domains by the first quality scan."""
    import subprocess
    import sys

    heavy = ("fpdf", "PIL", "fontTools", "segno", "stripe", "alembic", "mako", "pygments",
             "aiohttp", "requests", "urllib3", "jsonpath", "celery", "kombu",
             "disposable_email_domains")
    code = ("import sys; from app import create_app; "
            "create_app('testing', SQLALCHEMY_DATABASE_URI='sqlite://'); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    assert loaded == "[]"
