"""The package's layering, read from the source with `ast` (DESIGN.md, "Rules that keep it clean" 1 and 2):

- no import cycle between modules of src/peerloom;
- no module below the composition root imports `peerloom.node`, `peerloom.api` or `peerloom.cli`;
- the sans-I/O protocol cores import no asyncio (nor threads, selectors, subprocesses) and read no clock.

Every import statement counts wherever it is: at module level, under `if TYPE_CHECKING:`, inside a function. An edge
goes to the module named (`from peerloom.torrent import wire` names `peerloom.torrent.wire`; `from peerloom import
__version__` names the package `peerloom`); the parent packages Python also initialises on the way are not edges of
their own, or the root package's lazy re-export of `Node` would put every module on a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import peerloom

SRC = Path(peerloom.__file__).resolve().parent.parent


# The protocol cores: bytes and the current time in, events and bytes out (DESIGN.md rule 2). Checked to be so.
SANS_IO = [
    *sorted(
        f"peerloom.codec.{p.stem}" for p in (SRC / "peerloom" / "codec").glob("*.py") if p.stem != "__init__"
    ),
    "peerloom.net.multistream", "peerloom.net.noise", "peerloom.net.yamux", "peerloom.net.identify",
    "peerloom.net.relay.messages", "peerloom.net.relay.reservations", "peerloom.net.nat.dcutr",
    "peerloom.dht.krpc", "peerloom.dht.node", "peerloom.dht.routing", "peerloom.dht.lookup", "peerloom.dht.storage",
    "peerloom.dht.bep44",
    "peerloom.discovery.lsd", "peerloom.discovery.mdns_records", "peerloom.discovery.peer_record",
    "peerloom.torrent.wire", "peerloom.torrent.extensions", "peerloom.torrent.picker", "peerloom.torrent.choker",
    "peerloom.torrent.metainfo", "peerloom.torrent.magnet", "peerloom.torrent.merkle", "peerloom.torrent.udp_tracker",
    "peerloom.torrent.tracker", "peerloom.torrent.peer_pieces", "peerloom.torrent.peer_wire", "peerloom.torrent.mse",
    "peerloom.torrent.swarm_peers", "peerloom.torrent.webseed", "peerloom.torrent.utp_packet",
    "peerloom.torrent.utp_ledbat", "peerloom.torrent.utp_mtu", "peerloom.torrent.utp_batch", "peerloom.torrent.utp",
    "peerloom.apps.pubsub.rpc", "peerloom.apps.pubsub.message", "peerloom.apps.pubsub.params",
    "peerloom.apps.pubsub.mcache", "peerloom.apps.pubsub.router", "peerloom.apps.pubsub.router_state",
    "peerloom.apps.pubsub.router_heartbeat",
    "peerloom.apps.pubsub.score",
    "peerloom.apps.docs.keys", "peerloom.apps.docs.updates", "peerloom.apps.docs.yupdate", "peerloom.apps.docs.textpos",
    "peerloom.apps.docs.syncproto", "peerloom.apps.docs.awareness", "peerloom.apps.docs.sync",
    "peerloom.apps.docs.bridge",
    "peerloom.apps.btc.serialize", "peerloom.apps.btc.tx", "peerloom.apps.btc.block", "peerloom.apps.btc.params",
    "peerloom.apps.btc.p2p", "peerloom.apps.btc.session", "peerloom.apps.btc.headers", "peerloom.apps.btc.checks",
    "peerloom.apps.compute.wire", "peerloom.apps.compute.scheduler",
    "peerloom.net.nat.autonat", "peerloom.net.nat.natpmp", "peerloom.net.nat.upnp",
    "peerloom.apps.exit.wire", "peerloom.apps.exit.socks", "peerloom.apps.exit.policy",
    "peerloom.apps.btc.rules", "peerloom.apps.btc.sigops", "peerloom.apps.btc.coins", "peerloom.apps.btc.validation",
    "peerloom.apps.btc.miner",
    "peerloom.apps.btc.bech32", "peerloom.apps.btc.bip32", "peerloom.apps.btc.spend",
]
IO_MODULES = {"asyncio", "uvloop", "selectors", "threading", "subprocess"}
CLOCKS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "process_time", "sleep"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module of src/peerloom, or any other module's full name
    line: int


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted((src / "peerloom").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import statement of the module, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield Import(name, submodule if submodule in known else source, node.lineno)


def graph(mods: dict[str, Path]) -> dict[str, dict[str, Import]]:
    """Module -> the modules of the package it imports (the first import statement of each, by line)."""
    known = set(mods)
    edges: dict[str, dict[str, Import]] = {name: {} for name in mods}
    for name, path in mods.items():
        for imp in sorted(imports_of(name, path, known), key=lambda i: i.line):
            if imp.imported in known and imp.imported != name:
                edges[name].setdefault(imp.imported, imp)
    return edges


def cycles(edges: dict[str, dict[str, Import]], ignored: Collection[tuple[str, str]] = ()) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if (v, w) in ignored:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(edges[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def one_cycle(
    component: list[str], edges: dict[str, dict[str, Import]], ignored: Collection[tuple[str, str]] = ()
) -> str:
    """A shortest cycle through the component's first module, as the import lines that make it."""
    start = component[0]
    inside = set(component)
    came_from: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w, imp in sorted(edges[v].items()):
                if w not in inside or (v, w) in ignored or w in came_from:
                    continue
                came_from[w] = imp
                if w == start:
                    steps = []
                    while not steps or steps[-1].importer != start:
                        steps.append(came_from[steps[-1].importer if steps else start])
                    return " -> ".join(f"{i.importer} (line {i.line})" for i in reversed(steps)) + f" -> {start}"
                following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def top_layer(name: str) -> bool:
    """The composition root and what drives it: the root package (it re-exports Node), __main__, node, api, cli, and
    each app's own routes and commands (apps/<name>/api.py and cli.py, DESIGN.md's layout), which the API and the CLI
    mount."""
    parts = name.split(".")
    return (
        name in ("peerloom", "peerloom.__main__", "peerloom.node")
        or parts[1] == "api"
        or parts[1] == "cli"
        or parts[1].startswith("cli_")
        or (parts[1] == "apps" and len(parts) == 4 and parts[3] in ("api", "cli"))
    )


def upward(edges: dict[str, dict[str, Import]]) -> list[Import]:
    """Imports of node, api or cli from any module below them (codec, identity, net, dht, discovery, torrent, apps,
    and the shared modules beside them)."""
    return [
        imp
        for name, targets in edges.items()
        if not top_layer(name)
        for target, imp in targets.items()
        if top_layer(target) and target != "peerloom"
    ]


MODULES = modules()
EDGES = graph(MODULES)


def test_the_reader_sees_imports_at_every_level() -> None:
    """A check of the reader itself: imports under TYPE_CHECKING, inside functions and relative ones are edges."""
    assert "peerloom.node" in EDGES["peerloom"]  # the root package's lazy `from peerloom.node import Node`
    assert "peerloom.torrent.context" in EDGES["peerloom.torrent.peer"]  # under `if TYPE_CHECKING:`
    assert "peerloom.torrent.wire" in EDGES["peerloom.torrent.swarm"]  # `from peerloom.torrent import wire`


def test_no_import_cycles() -> None:
    left = cycles(EDGES)
    assert not left, "import cycles: " + " | ".join(one_cycle(c, EDGES) for c in left)


def test_no_lower_module_imports_node_api_or_cli() -> None:
    bad = list(upward(EDGES))
    assert not bad, "imports from below the composition root: " + ", ".join(
        f"{imp.importer} -> {imp.imported} (line {imp.line})" for imp in bad
    )


def clock_and_io_uses(name: str, path: Path) -> list[str]:
    """What in the module does I/O or reads a clock: an import of an I/O module, a clock function of `time`, a
    `.time()` call (an event loop's clock), `datetime.now()` and friends."""
    found = [
        f"imports {imp.imported} (line {imp.line})"
        for imp in imports_of(name, path, set())
        if imp.imported.split(".")[0] in IO_MODULES
    ]
    time_names = {"time"}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            time_names |= {alias.asname or alias.name for alias in node.names if alias.name == "time"}
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            found += [f"imports time.{a.name} (line {node.lineno})" for a in node.names if a.name in CLOCKS]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in time_names and node.attr in CLOCKS:
                found.append(f"time.{node.attr} (line {node.lineno})")
            elif node.attr in ("now", "utcnow", "today") and isinstance(node.value, ast.Name) and node.value.id in (
                "datetime", "date"
            ):
                found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "time":
            found.append(f".time() call (line {node.lineno})")
    return found


def test_the_sans_io_list_names_real_modules() -> None:
    assert len(SANS_IO) == len(set(SANS_IO)) and set(SANS_IO) <= set(MODULES)
    assert "peerloom.codec.bencode" in SANS_IO


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_import_no_asyncio_and_read_no_clock(name: str) -> None:
    assert clock_and_io_uses(name, MODULES[name]) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """Each check fails on a planted violation: a cycle (through a TYPE_CHECKING import), an upward import inside
    a function, a clock read and an asyncio import in a sans-I/O module."""
    root = tmp_path / "peerloom"
    (root / "torrent").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "node.py").write_text("from peerloom.torrent import wire\n")
    (root / "torrent" / "__init__.py").write_text("")
    (root / "torrent" / "wire.py").write_text(
        "import time as clock\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from peerloom.torrent import pick\n"
        "def f(loop):\n    from asyncio import sleep\n    return clock.monotonic() + loop.time()\n"
    )
    (root / "torrent" / "pick.py").write_text(
        "def g():\n    import peerloom.node\nfrom . import wire\nfrom .. import node\n"  # relative: the same two
    )
    mods = modules(tmp_path)
    edges = graph(mods)
    assert cycles(edges) == [["peerloom.node", "peerloom.torrent.pick", "peerloom.torrent.wire"]]
    assert one_cycle(cycles(edges)[0], edges) == (
        "peerloom.node (line 1) -> peerloom.torrent.wire (line 4) -> peerloom.torrent.pick (line 2) -> peerloom.node"
    )
    assert cycles(edges, {("peerloom.torrent.wire", "peerloom.torrent.pick")}) == []
    assert [(i.importer, i.imported) for i in upward(edges)] == [("peerloom.torrent.pick", "peerloom.node")]
    uses = clock_and_io_uses("peerloom.torrent.wire", mods["peerloom.torrent.wire"])
    assert sorted(u.split(" (")[0] for u in uses) == [".time() call", "imports asyncio", "time.monotonic"]
