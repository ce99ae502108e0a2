"""The layout's rules, checked on the source: the pure core does no I/O, only the command line
assembles the program, and imports run one way (no cycles).

The import graph is read with ``ast`` from every module of ``connector/``: imports at module level
(not those under ``if TYPE_CHECKING:``, which are for the type checker only) and imports inside
functions (deferred, but still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "connector"

#: modules of the standard library and dependencies that do I/O, keep threads or read the clock
IO_MODULES = {
    "socket", "sqlite3", "http", "urllib", "requests", "urllib3", "slack_sdk", "pysnow", "psycopg",
    "threading", "subprocess", "os", "io", "pathlib", "shutil", "tempfile", "time", "schedule",
    "logging", "signal", "selectors", "asyncio", "concurrent", "multiprocessing", "icalendar",
    "prometheus_client", "tenacity", "yaml",
}  # fmt: skip


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, base])
                found.add(base.strip("."))
                found.update(f"{base}.{a.name}".strip(".") for a in child.names)
            visit(child)

    visit(tree)
    return found


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
GRAPH = {
    name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()
}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("connector.domain")))
def test_the_domain_does_no_io_and_imports_only_the_domain(module: str) -> None:
    imported = imports_of(MODULES[module])
    io = sorted(i for i in imported if i.split(".")[0] in IO_MODULES)
    assert not io, f"{module} imports {io}: the domain takes data and now, and does no I/O"
    ours = sorted(i for i in imported if i.startswith("connector.") and i in MODULES)
    outside = [i for i in ours if not i.startswith("connector.domain")]
    assert not outside, f"{module} imports {outside}: the domain imports only the domain"


def test_only_the_command_line_imports_the_wiring() -> None:
    users = sorted(m for m, deps in GRAPH.items() if "connector.wiring" in deps)
    assert users and all(u.startswith("connector.cli") for u in users), users


def test_there_are_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                walk(dep, [*path, dep])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_logger_is_named_after_its_module() -> None:
    """A log line names the module that wrote it (``journalctl`` filters and readers rely on it): a
    logger spelled by hand outlives the move of its code."""
    spelled = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("getLogger")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and not str(node.args[0].value).startswith(f"{name}.")  # a child logger is fine
            ):
                spelled.append(f"{name}: getLogger({node.args[0].value!r})")
    assert not spelled, spelled
