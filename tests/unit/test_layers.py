"""The import graph of ``srs``: every import points down the layers, and no module imports itself back.

The layers, lowest first (a package may import only from layers below its own):

    errors
    config                 its value types (addresses, limits) may travel down as plain values
    sip, sdp, rtp          pure protocol code: bytes and ``now`` in, events and bytes out
    siprec                 the SIPREC user agent, metadata, admission
    media                  per-stream placement and rendering, mixer, WAV writer, report
    mediaplane             ports, the media worker, journal, native receiver
    storage                the index (SQLite or PostgreSQL) and the object store
    service                recordings, tokens, exports, webhooks, retention
    net, api               the SIP edge; the HTTP routes and console
    daemon                 the composition root
    cli                    the ``srs`` command

The ``Config`` object itself is read only by the composition roots (``daemon``, ``cli``).
Type-only imports count: a cycle through ``TYPE_CHECKING`` still ties two modules together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRS = Path(__file__).resolve().parents[2] / "srs"

LAYER = {
    "errors": 0,
    "config": 1,
    "sip": 2,
    "sdp": 2,
    "rtp": 2,
    "siprec": 3,
    "media": 4,
    "mediaplane": 5,
    "storage": 6,
    "service": 7,
    "net": 8,
    "api": 8,
    "daemon": 9,
    "cli": 10,
    "__main__": 11,
    "__init__": 11,
}
READS_CONFIG = {"daemon", "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRS.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[tuple[str, str]]]:
    """Each srs module -> the (module, name) pairs it imports from srs (name "" for ``import x``)."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    modules = {module_name(p) for p in SRS.rglob("*.py")}
    for path in SRS.rglob("*.py"):
        here = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        found[here].add((sub, ""))
                    elif node.module.startswith("srs."):
                        found[here].add((node.module, alias.name))
            elif isinstance(node, ast.Import):
                found[here].update((a.name, "") for a in node.names if a.name.startswith("srs."))
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{here}: relative import; srs imports absolutely")
    return found


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module_name(p)) for p in SRS.rglob("*.py")}
    assert packages <= set(LAYER), packages - set(LAYER)


def test_no_loose_modules_at_the_top_of_the_package() -> None:
    loose = {p.name for p in SRS.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", "errors.py", "config.py"}, loose


def test_imports_point_down_the_layers() -> None:
    upward = []
    for here, targets in imports().items():
        for target, _ in targets:
            a, b = package_of(here), package_of(target)
            if a != b and LAYER[b] >= LAYER[a]:
                upward.append(f"{here} -> {target}")
    assert not upward, upward


def test_only_the_composition_roots_read_the_config_object() -> None:
    readers = sorted(
        here
        for here, targets in imports().items()
        if ("srs.config", "Config") in targets and package_of(here) not in READS_CONFIG
    )
    assert not readers, readers


def test_no_module_imports_itself_back() -> None:
    graph = {here: {t for t, _ in targets} for here, targets in imports().items()}
    cycles = []
    # Tarjan's strongly connected components; any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, cycles
