"""The import graph of our packages: one-way layers, no circles (README "Development" draws the map).

Read from the source with ``ast``, so nothing is imported and every import counts: module-level,
function-level (lazy) and ``if TYPE_CHECKING:`` ones alike -- a lazy or typing-only import still ties
two modules together, and a circle hidden behind one comes back the day someone hoists it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("oneshot_shared", "pytest_oneshot", "proxy", "mcp_server")
SEPARATE = ("pytest_oneshot", "proxy")
"""Neither imports the other, nor names the other's modules in a string (a lazy ``"module:attr"``)."""
LOADED_BY_PATH = ("proxy.addon", "proxy.redact", "proxy.tracestore", "oneshot_shared.sse", "oneshot_shared.wire")
"""Run inside mitmdump's own venv, where our packages are not installed: stdlib (and mitmproxy) only."""
KNOWN_CIRCLES: dict[frozenset[str], str] = {}
MAP_ROWS: dict[str, int] = {
    # The README's module map ("Development"), bottom (1) to top; a package name covers its modules,
    # the most specific entry wins. Importing from a higher row is an upward import.
    "oneshot_shared": 1,
    "pytest_oneshot": 2,  # the package's own __init__ (empty)
    **dict.fromkeys(("usage", "files", "errors", "secretscan", "options"), 2),
    **dict.fromkeys(
        ("repo", "task", "task_tests", "change", "settings", "registry", "pricing", "logcap", "owner", "overrides"), 3
    ),
    **dict.fromkeys(("agent", "workspace", "scoring", "judge", "sandbox", "hf"), 4),
    "model": 5,  # cassette, catalog, serving, the package
    **dict.fromkeys(("agent.codex", "model.gateway", "model.limiter", "model.replay", "model.scripted"), 6),
    **dict.fromkeys(("report", "result", "model.sidecar"), 7),
    **dict.fromkeys(("concurrency", "trial"), 8),
    **dict.fromkeys(("plugin", "collect", "hookspecs", "stash", "cli", "regrade", "rebench", "validate", "harbor"), 9),
    # the Codex Runner: its file format, its endpoint client, its sandbox runs, its figures, its glue
    "runner": 9,  # the package (empty), runner.collect and runner.cli
    "runner.questions": 3,
    "runner.completions": 5,
    "runner.execute": 5,
    "runner.summary": 8,
    "proxy": 2,  # its __init__; proxy's rows are its own column
    **{f"proxy.{name}": 2 for name in ("tracestore", "redact", "addon")},
    **{f"proxy.{name}": 3 for name in ("manage", "cleaner")},
    **{f"proxy.{name}": 4 for name in ("proxy_cli", "traces_cli", "recorder")},
    # mcp_server/ (task capture) sits above both: it uses the core (task loading) and the proxy's store.
    "mcp_server": 10,  # its __init__
    **{f"mcp_server.{name}": 10 for name in ("gitrepo", "sensitivity", "codex_config")},
    **{f"mcp_server.{name}": 11 for name in ("state", "readiness", "validate")},
    **{f"mcp_server.{name}": 12 for name in ("created", "prepare")},
    "mcp_server.capture": 13,
    **{f"mcp_server.{name}": 14 for name in ("server", "cli")},
    "mcp_server.__main__": 15,
}
UPWARD_ONLY = ("pytest_oneshot", "proxy", "oneshot_shared")
"""Nothing of these imports mcp_server (the harness reaches it only through its entry points)."""
_MODULE_STRING = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.\w+)+)(?::\w+)?$")


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    where: str
    """``path:line`` of the import."""
    in_string: bool = False


def _row(module: str) -> int | None:
    """``module``'s row: its own entry, else its package's (a new module of proxy/ or the top level has none)."""
    key = module.removeprefix("pytest_oneshot.")
    if key.startswith("oneshot_shared"):
        return MAP_ROWS["oneshot_shared"]
    while key and key not in MAP_ROWS:
        key = key.rpartition(".")[0]
        if key in ("proxy", "mcp_server"):  # each of their modules has its own entry
            return None
    return MAP_ROWS.get(key)


def _modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _imports(modules: dict[str, Path], root: Path = ROOT) -> Iterator[Import]:
    """Every import between our modules, resolved to the module it loads (``from pkg import mod`` -> ``pkg.mod``)."""

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for source, path in modules.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            in_string = False
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                names = [f"{base}.{alias.name}" for alias in node.names]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and (m := _MODULE_STRING.match(node.value))
            ):
                names, in_string = [m["module"]], True
            for name in names:
                target = ours(name)
                if target is not None and target != source:
                    yield Import(source, target, f"{path.relative_to(root)}:{node.lineno}", in_string)


def _circles(imports: list[Import]) -> list[list[Import]]:
    """One circle (as its imports) per strongly connected group of modules (Tarjan)."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in imports:
        if not edge.in_string:  # a registry's lazy "module:attr" names a plugin, it does not load it
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            if group:
                groups.append(group | {node})

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, group) for group in groups]


def _path_through(graph: dict[str, dict[str, Import]], group: set[str]) -> list[Import]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, edge in sorted(graph[node].items()):
                if target == start:
                    return [*paths[node], edge]
                if target in group and target not in paths:
                    paths[target] = [*paths[node], edge]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {sorted(group)}")


def _describe(circle: list[Import]) -> str:
    return " -> ".join(f"{edge.source} ({edge.where})" for edge in circle) + f" -> {circle[0].source}"


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return list(_imports(_modules()))


def test_no_import_circles(imports: list[Import]) -> None:
    circles = _circles(imports)
    found = {frozenset(edge.source for edge in circle): circle for circle in circles}
    new = [_describe(circle) for members, circle in found.items() if members not in KNOWN_CIRCLES]
    assert not new, "import circle(s), lazy and TYPE_CHECKING imports included:\n" + "\n".join(new)
    gone = [sorted(members) for members in KNOWN_CIRCLES if members not in found]
    assert not gone, f"these circles are gone: remove them from KNOWN_CIRCLES: {gone}"


def test_every_module_is_on_the_map_and_imports_downwards(imports: list[Import]) -> None:
    missing = sorted(module for module in _modules() if _row(module) is None)
    assert not missing, f"not on the module map: add them to MAP_ROWS and the README's map: {missing}"
    upward = [
        f"{e.where}: {e.source} (row {_row(e.source)}) imports {e.target} (row {_row(e.target)})"
        for e in imports
        if not e.in_string and (_row(e.target) or 0) > (_row(e.source) or 0)
    ]
    assert not upward, "upward imports (README's module map, Development):\n" + "\n".join(upward)


def test_harness_and_proxy_never_import_each_other(imports: list[Import]) -> None:
    crossing = [
        f"{edge.where}: {edge.source} -> {edge.target}{' (in a string)' if edge.in_string else ''}"
        for edge in imports
        if {edge.source.partition(".")[0], edge.target.partition(".")[0]} == set(SEPARATE)
    ]
    assert not crossing, "pytest_oneshot and proxy meet only in oneshot_shared (or an entry point):\n" + "\n".join(
        crossing
    )


def test_nothing_below_imports_the_capture_server(imports: list[Import]) -> None:
    upward = [
        f"{e.where}: {e.source} -> {e.target}"
        for e in imports
        if e.source.partition(".")[0] in UPWARD_ONLY and e.target.startswith("mcp_server")
    ]
    assert not upward, "mcp_server uses the core and the proxy, never the reverse:\n" + "\n".join(upward)


def test_shared_package_imports_nothing_of_ours_but_itself(imports: list[Import]) -> None:
    outward = [
        f"{e.where}: {e.target}"
        for e in imports
        if e.source.startswith("oneshot_shared") and not e.target.startswith("oneshot_shared")
    ]
    assert not outward, "oneshot_shared is the bottom layer:\n" + "\n".join(outward)


@pytest.mark.parametrize("module", LOADED_BY_PATH)
def test_modules_mitmdump_loads_by_path_use_the_stdlib_only(module: str) -> None:
    path = _modules()[module]
    allowed = set(sys.stdlib_module_names) | {"mitmproxy", "__future__"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." if node.level else node.module or "")
    assert not [name for name in found if name.partition(".")[0] not in allowed], f"{path}: {found}"


def test_the_check_sees_lazy_typing_and_string_imports(tmp_path: Path) -> None:
    """The checker itself: each kind of import becomes an edge, and a circle through them is found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import X\n"
    )
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\nLAZY = 'pkg.b:thing'\n")
    imports = list(_imports(_modules(tmp_path, ("pkg",)), tmp_path))
    edges = {(e.source, e.target, e.in_string) for e in imports}
    assert edges == {
        ("pkg.a", "pkg.b", False),
        ("pkg.b", "pkg.c", False),
        ("pkg.c", "pkg.a", False),
        ("pkg.c", "pkg.b", True),
    }
    (circle,) = _circles(imports)
    assert [edge.source for edge in circle] == ["pkg.a", "pkg.b", "pkg.c"]


def test_a_sandboxs_own_pytest_run_imports_only_the_option_table(tmp_path: Path) -> None:
    """pytest loads the plugin in every process that has it installed, a task's test run in a local
    sandbox included, where it is inert: there it must cost nothing but its option table (the whole
    harness, with pydantic's models, was 0.17 s of CPU added to every scoring run)."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    (tmp_path / "conftest.py").write_text(
        "import json, sys\n"
        "def pytest_sessionfinish(session):\n"
        "    names = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest_oneshot', 'pydantic'))\n"
        "    (session.config.rootpath / 'modules.json').write_text(json.dumps(names))\n"
    )
    env = {**os.environ, "ONESHOT_IN_SANDBOX": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    loaded = json.loads((tmp_path / "modules.json").read_text())
    assert loaded == [
        "pytest_oneshot",
        *(f"pytest_oneshot.{name}" for name in ("hookspecs", "options", "plugin", "stash")),
    ]
