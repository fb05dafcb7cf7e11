"""The package's shape: one room per concern, dependencies pointing one way, nothing too long.

- The import contracts in pyproject.toml ([tool.importlinter]) hold: cli above
  commands | service above harvest above store above the foundation, errors and model;
  the simulator imports nothing from the product.
- No import cycle anywhere in `harvester`, counting imports under `if TYPE_CHECKING:`.
- The simulator and the model stand alone.
- No module over 400 lines, no class over 250, no function over 60, unless a
  `# long: <why>` comment says why (on the line above the def/class, or in a module's
  header, before its first statement after the docstring).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest
from helpers import ROOT

PACKAGE = "harvester"
PACKAGE_DIR = ROOT / PACKAGE

MODULE_LIMIT = 400
CLASS_LIMIT = 250
FUNCTION_LIMIT = 60
LONG_MARKER = "# long:"

# The rooms the layout promises (issue "One room per concern"); the layers contract
# ranks them and its `exhaustive` option refuses any other module directly under harvester/.
ROOMS = {
    "model": "model.py",
    "errors": "errors.py",
    "config": "config.py",
    "identifiers": "identifiers.py",
    "logs": "logs.py",
    "progress": "progress.py",
    "scheduling": "scheduling.py",
    "dump": "dump/__init__.py",
    "store": "store/__init__.py",
    "dataset": "dataset/__init__.py",
    "harvest": "harvest/__init__.py",
    "service": "service/__init__.py",
    "commands": "commands/__init__.py",
    "web": "web/__init__.py",
    "notebook": "notebook.py",
    "sim": "sim/__init__.py",
    "cli": "cli.py",
}

# Packages that may import nothing from harvester outside themselves.
STANDALONE = ("harvester.model", "harvester.sim")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    spec = importlib.util.find_spec(PACKAGE)
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    assert origin == PACKAGE_DIR / "__init__.py", (
        f"{PACKAGE} is imported from {origin}, not from this checkout ({PACKAGE_DIR})"
    )
    # exclude_type_checking_imports=False: a cycle behind TYPE_CHECKING is still a cycle.
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=False, cache_dir=None)


def test_every_room_exists() -> None:
    missing = [
        f"harvester.{room} ({PACKAGE}/{path})"
        for room, path in ROOMS.items()
        if not (PACKAGE_DIR / path).is_file()
    ]
    assert not missing, "rooms of the layout that do not exist yet:\n  " + "\n  ".join(missing)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"lint-imports failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over direct imports; returns every component that is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(module: str) -> None:
        nonlocal counter
        index[module] = low[module] = counter
        counter += 1
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            self_import = graph.direct_import_exists(importer=module, imported=module)
            if len(component) > 1 or self_import:
                components.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(components)


def _shortest_cycle_through(graph: grimp.ImportGraph, start: str, within: set[str]) -> list[str]:
    """The shortest import path start -> ... -> start inside one component (BFS)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                if imported not in within or imported in parents:
                    continue
                parents[imported] = module
                if imported == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(parents[path[-1]])
                    return path[::-1]
                following.append(imported)
        frontier = following
    raise AssertionError(f"{start} is in a cycle, yet no path leads back to it")


def _describe_import(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    where = "; ".join(f"l.{d['line_number']}: {d['line_contents']}" for d in details)
    return f"    {importer} -> {imported}  ({where})"


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    """Any cycle fails: between rooms, inside one, or through a package's __init__.

    An __init__ importing its own submodules is no cycle by itself; it becomes one only
    when a submodule imports the package back, and then it is reported like any other.
    Each tangle (strongly connected component) is named, then the shortest cycle through
    each of its modules, hop by hop with the import's line.
    """
    tangles = _strongly_connected(graph)
    report = []
    for tangle in tangles:
        members = set(tangle)
        report.append(f"tangle of {len(tangle)}: " + ", ".join(tangle))
        seen: set[tuple[str, ...]] = set()
        for module in tangle:
            cycle = _shortest_cycle_through(graph, module, members)
            hops = cycle[:-1]
            turn = hops.index(min(hops))  # the same cycle, whichever module it starts at
            key = tuple(hops[turn:] + hops[:turn])
            if key in seen:
                continue
            seen.add(key)
            report.append("  cycle " + " -> ".join(cycle))
            report.extend(_describe_import(graph, a, b) for a, b in itertools.pairwise(cycle))
    assert not tangles, f"{len(tangles)} import cycle(s) in {PACKAGE}:\n" + "\n".join(report)


def test_standalone_rooms_import_nothing_from_the_product(graph: grimp.ImportGraph) -> None:
    """Belt and braces for the forbidden contract: also catches the root package and
    modules added after the contract was written."""
    offences = []
    for room in STANDALONE:
        if room not in graph.modules:
            continue  # test_every_room_exists reports it
        own = {room} | graph.find_descendants(room)
        for module in sorted(own):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                if imported not in own:
                    offences.append(_describe_import(graph, module, imported))
    assert not offences, "standalone rooms import the product:\n" + "\n".join(offences)


def _python_files() -> Iterator[Path]:
    yield from sorted(PACKAGE_DIR.rglob("*.py"))


def _has_reason(line: str) -> bool:
    text = line.strip()
    return text.startswith(LONG_MARKER) and bool(text[len(LONG_MARKER) :].strip())


def _comment_block_above(lines: list[str], lineno: int) -> list[str]:
    """The contiguous comment lines directly above 1-based line `lineno`."""
    block = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        block.append(lines[i])
        i -= 1
    return block


def _header(tree: ast.Module, lines: list[str]) -> list[str]:
    """A module's lines before its first statement after the docstring."""
    body = tree.body
    if ast.get_docstring(tree, clean=False) is not None:
        body = body[1:]
    end = body[0].lineno - 1 if body else len(lines)
    return lines[:end]


def _size_offences(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    name = path.relative_to(ROOT).as_posix()
    offences = []
    if len(lines) > MODULE_LIMIT and not any(map(_has_reason, _header(tree, lines))):
        offences.append(f"{name}: module is {len(lines)} lines (limit {MODULE_LIMIT})")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            kind, limit = "class", CLASS_LIMIT
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind, limit = "function", FUNCTION_LIMIT
        else:
            continue
        size = (node.end_lineno or node.lineno) - node.lineno + 1
        if size <= limit:
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        if any(map(_has_reason, _comment_block_above(lines, top))):
            continue
        offences.append(f"{name}:{node.lineno}: {kind} {node.name} is {size} lines (limit {limit})")
    return offences


def test_nothing_is_too_long() -> None:
    offences = [offence for path in _python_files() for offence in _size_offences(path)]
    assert not offences, (
        f"{len(offences)} too long; split them, or say why on the line above "
        f"(for a module: in its header) with '{LONG_MARKER} <why>':\n  " + "\n  ".join(offences)
    )
