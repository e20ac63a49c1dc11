"""`peerloom doc new|ls|share|cat|edit|import|export`: collaborative documents from the command line.

Each command goes through the daemon running for the home when there is one (its node keeps the documents in sync
with their peers), else runs a node of its own on the home for as long as the command lasts: it dials the `--peer`
addresses and waits up to `--wait` seconds for them to send what it lacks. Every write is durable when the command
returns (the daemon answers once the signed update is committed). DOC is a document's id (or a unique prefix of it,
as `ls` shows) or a `peerloom://doc/` link.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from peerloom.apps.pubsub.cli import parse_peers
from peerloom.cli.common import UserError, err, fail, guarded, human_size, out, print_json, printable, usage
from peerloom.cli.options import HomeOption, JsonOption, NoDaemonOption
from peerloom.cli.running import home_or_default, node_settings, run
from peerloom.cli.via_daemon import running_daemon

if TYPE_CHECKING:
    from peerloom.api.client import DaemonClient
    from peerloom.apps.docs.handle import DocHandle
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.node import Node

V1 = "/api/v1/docs"
MAX_FILE = 4 * 1024 * 1024  # characters of text `import` and `edit` take (the API's bound)

DocArgument = Annotated[str, typer.Argument(help="The document: its id (or a unique prefix of it) or a link.")]
PeerOption = Annotated[
    list[str] | None,
    typer.Option("--peer", metavar="MULTIADDR", help="A peer to dial on the secure layer (repeat for more)."),
]
WaitOption = Annotated[float, typer.Option("--wait", min=0, max=60, metavar="SECONDS",
                                           help="Seconds (0 to 60) to wait for the peers' changes.")]


# -- one node or the daemon -----------------------------------------------------------------------------
class Docs:
    """The documents of the home: through the daemon (`client`) or a node of the command's own (`node`)."""

    def __init__(self, client: DaemonClient | None, node: Node | None) -> None:
        self.client, self.node = client, node

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.client is not None
        client = self.client
        return await asyncio.to_thread(guarded, lambda: client.call(method, path, body))

    async def all(self) -> list[dict[str, Any]]:
        if self.client is not None:
            return (await self.call("GET", V1))["docs"]
        assert self.node is not None
        from peerloom.apps.docs.api import describe

        return [describe(h) for h in (self.node.docs.get(i.id) for i in self.node.docs.list()) if h]

    async def resolve(self, doc: str) -> str:
        """The id of DOC: a link is opened (held from now on), an id prefix must match exactly one document."""
        if doc.startswith("peerloom://"):
            if self.client is not None:
                return (await self.call("POST", f"{V1}/open", {"link": doc}))["id"]
            assert self.node is not None
            return (await guarded_async(self.node.docs.open(doc))).id
        matches = [d["id"] for d in await self.all() if d["id"].startswith(doc.lower())]
        if len(matches) != 1:
            fail(f"no document matches {printable(doc)!r}" if not matches else
                 f"{printable(doc)!r} matches {len(matches)} documents: give more of the id")
        return matches[0]

    async def get(self, doc_id: str) -> dict[str, Any]:
        if self.client is not None:
            return await self.call("GET", f"{V1}/{doc_id}")
        from peerloom.apps.docs.api import describe

        return describe(self.handle(doc_id), with_text=True)

    def handle(self, doc_id: str) -> DocHandle:
        assert self.node is not None
        handle = self.node.docs.get(doc_id)
        assert handle is not None
        return handle

    async def create(self, title: str | None, text: str | None) -> dict[str, Any]:
        if self.client is not None:
            return await self.call("POST", V1, {"title": title, "text": text or ""})
        assert self.node is not None
        handle = await self.node.docs.create(title)
        if text:
            handle.text().insert(0, text)
        return await self.get(handle.id)

    async def replace(self, doc_id: str, text: str) -> dict[str, Any]:
        if self.client is not None:
            return await self.call("PUT", f"{V1}/{doc_id}/text", {"text": text})
        self.handle(doc_id).text().replace(text)
        return await self.get(doc_id)

    async def edit(self, doc_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None:
            return await self.call("POST", f"{V1}/{doc_id}/edits", body)
        text = self.handle(doc_id).text()
        if "insert" in body:
            text.insert(body["index"], body["insert"])
        else:
            text.delete(body["index"], body["delete"])
        return await self.get(doc_id)

    async def sync(self, doc_id: str, peers: list[Multiaddr], wait: float) -> None:
        """Dial the peers and wait (up to `wait` s) until each sent what this node lacked of the document."""
        if not peers:
            return
        if self.client is not None:
            await self.call("POST", f"{V1}/{doc_id}/peers", {"peers": [str(p) for p in peers]})
            await asyncio.sleep(min(wait, 1.0))
            return
        assert self.node is not None
        node = self.node
        handle = self.handle(doc_id)
        conns = await asyncio.gather(*(node.secure_host.connect(p) for p in peers), return_exceptions=True)
        waits = [node.docs.wait_synced(handle, c.remote_peer, wait) for c in conns
                 if not isinstance(c, BaseException) and c.remote_peer is not None]
        for c in conns:
            if isinstance(c, BaseException):
                err.print(f"note: {printable(c)}")
        if not waits:
            fail("no --peer answered")
        for result in await asyncio.gather(*waits, return_exceptions=True):
            if isinstance(result, TimeoutError):
                err.print(f"note: a peer did not finish sending its changes within {wait:g} s")


async def guarded_async(coro: Any) -> Any:
    from peerloom.errors import PeerloomError

    try:
        return await coro
    except PeerloomError as exc:
        fail(str(exc))


def with_docs(home: Path | None, no_daemon: bool, work: Any) -> None:
    """Run `work(docs)` through the daemon of the home, or a node of its own (no DHT, no LSD, loopback-friendly)."""
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        guarded(lambda: run(lambda stop: _returning(work(Docs(client, None)))))
        return
    from peerloom.node import Node

    settings = usage(lambda: node_settings(no_dht=True, no_lsd=True, no_mdns=True))

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host="127.0.0.1", settings=settings) as node:
            await work(Docs(None, node))
        return 0

    guarded(lambda: run(main))


async def _returning(coro: Any) -> int:
    await coro
    return 0


def print_doc(doc: dict[str, Any], as_json: bool, *, link: str | None = None) -> None:
    if as_json:
        print_json(doc)
    else:
        out.print(printable(link or doc["id"]))


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes() if str(path) != "-" else sys.stdin.buffer.read(MAX_FILE * 4 + 1)
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    if len(text) > MAX_FILE:
        raise UserError(f"{path}: over {MAX_FILE} characters")
    return text


# -- the commands ---------------------------------------------------------------------------------------
def new(
    title: Annotated[str | None, typer.Option("--title", help="The document's title (local).")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Its first text.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Create a document and print its share link (it gives write access: share `doc share --read` to readers)."""
    async def work(docs: Docs) -> None:
        made = await docs.create(title, text)
        print_doc(made, as_json, link=made["share_link"])
        if not as_json:
            err.print(f"document {made['id']} created")

    with_docs(home, no_daemon, work)


def list_docs(as_json: JsonOption = False, home: HomeOption = None, no_daemon: NoDaemonOption = False) -> None:
    """List the documents this home holds: id, title, rights, size, peers."""
    async def work(docs: Docs) -> None:
        rows = await docs.all()
        if as_json:
            print_json({"docs": rows})
            return
        if not rows:
            err.print("no document yet: `peerloom doc new`, or `peerloom doc cat LINK` to open one")
            return
        table = Table(box=None, header_style="bold")
        for column in ("Id", "Title", "Rights", "Size", "Peers"):
            table.add_column(column)
        for row in rows:
            rights = "write" if row["writable"] else "read" if row["readable"] else "relay"
            table.add_row(row["id"][:16], printable(row["title"] or ""), rights, human_size(row["size"]),
                          str(row["peers"]))
        out.print(table)

    with_docs(home, no_daemon, work)


def share(
    doc: DocArgument,
    read: Annotated[bool, typer.Option("--read", help="The link without the write key (read access).")] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Print the link that shares DOC (with every key this home holds, or only the read key with --read)."""
    async def work(docs: Docs) -> None:
        found = await docs.get(await docs.resolve(doc))
        print_doc(found, as_json, link=found["read_link"] if read else found["share_link"])

    with_docs(home, no_daemon, work)


def cat(
    doc: DocArgument,
    peer: PeerOption = None,
    wait: WaitOption = 5.0,
    as_json: JsonOption = False,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Print DOC's text (a link is opened first; --peer fetches what the peers have)."""
    peers = usage(lambda: parse_peers(peer))

    async def work(docs: Docs) -> None:
        doc_id = await docs.resolve(doc)
        await docs.sync(doc_id, peers, wait)
        found = await docs.get(doc_id)
        if "text" not in found:
            fail("this home holds no read key for the document (it only relays it)")
        if as_json:
            print_json(found)
        else:
            sys.stdout.write(found["text"])
            sys.stdout.flush()

    with_docs(home, no_daemon, work)


def edit(
    doc: DocArgument,
    append: Annotated[str | None, typer.Option("--append", help="Add TEXT at the end.")] = None,
    insert: Annotated[tuple[int, str] | None, typer.Option("--insert", metavar="INDEX TEXT",
                                                           help="Insert TEXT at INDEX (UTF-16 units).")] = None,
    delete: Annotated[tuple[int, int] | None, typer.Option("--delete", metavar="INDEX LENGTH",
                                                           help="Delete LENGTH UTF-16 units at INDEX.")] = None,
    peer: PeerOption = None,
    wait: WaitOption = 5.0,
    as_json: JsonOption = False,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Edit DOC: one change given as an option, or (with none) the text in $EDITOR, saved as the smallest edit.
    Durable when the command returns."""
    peers = usage(lambda: parse_peers(peer))
    if sum(x is not None for x in (append, insert, delete)) > 1:
        fail("give one of --append, --insert, --delete", 2)

    async def work(docs: Docs) -> None:
        doc_id = await docs.resolve(doc)
        await docs.sync(doc_id, peers, wait)
        current = await docs.get(doc_id)
        if "text" not in current:
            fail("this home holds no read key for the document")
        if append is not None:
            result = await docs.edit(doc_id, {"insert": append, "index": len(current["text"].encode("utf-16-le")) // 2})
        elif insert is not None:
            result = await docs.edit(doc_id, {"insert": insert[1], "index": insert[0]})
        elif delete is not None:
            result = await docs.edit(doc_id, {"delete": delete[1], "index": delete[0]})
        else:
            result = await docs.replace(doc_id, await asyncio.to_thread(in_editor, current["text"]))
        await docs.sync(doc_id, peers, min(wait, 1.0))  # let the peers have it
        print_doc(result, as_json)

    with_docs(home, no_daemon, work)


def in_editor(text: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="peerloom-doc-") as folder:
        path = Path(folder) / "document.txt"
        path.write_text(text, encoding="utf-8")
        if subprocess.call([*editor.split(), str(path)]) != 0:
            fail(f"{editor} exited with an error: the document is unchanged")
        return read_text(path)


def import_file(
    file: Annotated[Path, typer.Argument(help="A UTF-8 text file (- for stdin).")],
    title: Annotated[str | None, typer.Option("--title", help="The title (default: the file's name).")] = None,
    into: Annotated[str | None, typer.Option("--into", metavar="DOC", help="Replace DOC's text instead.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Make a document of FILE's text (or replace DOC's text with it, --into) and print its share link."""
    text = usage(lambda: read_text(file))

    async def work(docs: Docs) -> None:
        if into is not None:
            print_doc(await docs.replace(await docs.resolve(into), text), as_json)
            return
        made = await docs.create(title or file.name, text)
        print_doc(made, as_json, link=made["share_link"])

    with_docs(home, no_daemon, work)


def export(
    doc: DocArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    home: HomeOption = None,
    no_daemon: NoDaemonOption = False,
) -> None:
    """Write DOC's text to a file (atomically) or stdout."""
    async def work(docs: Docs) -> None:
        found = await docs.get(await docs.resolve(doc))
        if "text" not in found:
            fail("this home holds no read key for the document")
        if output is None:
            sys.stdout.write(found["text"])
            return
        temp = output.with_name(output.name + ".part")
        try:
            temp.write_text(found["text"], encoding="utf-8")
            os.replace(temp, output)
        except OSError as exc:
            fail(f"{output}: {exc.strerror}")
        err.print(f"wrote {output}")

    with_docs(home, no_daemon, work)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Collaborative documents (CRDT, Yjs-compatible), synced peer to peer.",
                        no_args_is_help=True, rich_markup_mode=None)
    group.command()(new)
    group.command("ls")(list_docs)
    group.command()(share)
    group.command()(cat)
    group.command()(edit)
    group.command("import")(import_file)
    group.command()(export)
    app.add_typer(group, name="doc")
