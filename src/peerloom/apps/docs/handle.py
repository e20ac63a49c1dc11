"""The Python API of one document (`DocHandle`), what `node.docs.create/open` return.

    doc = await node.docs.open(link)
    doc.text().insert(0, "héllo")          # positions in UTF-16 code units, as Yjs and browsers count
    await doc.apply_local(update)          # a Yjs v1 update from a local editor: checked, signed, stored, sent
    stop = doc.subscribe(lambda update, origin: ...)   # every update applied ("local" or "remote")

Every local change is durable when the call returns (the signed envelope is committed in the state database) and
is then sent to the peers by the service, which drains the handle's `DocSync` after each change (`changed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pycrdt import Array, Doc, Map, Text

from peerloom.apps.docs.held import HeldDoc, ReadOnlyDocument
from peerloom.apps.docs.keys import LINK_PREFIX, DocError
from peerloom.apps.docs.sync import DocSync
from peerloom.apps.docs.textpos import delete_utf16, insert_utf16, utf16_length
from peerloom.apps.docs.updates import MAX_UPDATE_SIZE, TAG_SIZE, UpdateRefused
from peerloom.codec.multibase import b32encode

log = logging.getLogger(__name__)

UpdateListener = Callable[[bytes, str], None]
AwarenessListener = Callable[[bytes, object], None]


class UpdateTooLarge(UpdateRefused):
    """A local update larger than one envelope may carry."""


@dataclass(frozen=True, slots=True)
class DocInfo:
    id: str  # hex of the 32-byte document id
    link: str  # peerloom://doc/<id>, no secrets
    title: str | None
    writable: bool
    readable: bool
    size: int  # bytes of the document's state as one update (0 when this node cannot read it)
    peers: int


def _notify(listeners: list[Callable[..., None]], *args: object) -> None:
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:  # one broken listener must not stop the others nor the sync
            log.exception("docs: a listener failed")


class DocAwareness:
    """The relay of y-protocols awareness updates of one document, for local bridges (presence only)."""

    def __init__(self, sync: DocSync, changed: Callable[[], None]) -> None:
        self._sync = sync
        self._changed = changed
        self._listeners: list[AwarenessListener] = []

    def apply(self, update: bytes, origin: object = "local") -> None:
        """An awareness update from a local editor (`origin` names it, and its listeners can skip their own echo):
        the entries new to this node go to the peers and the other listeners. AwarenessError when malformed."""
        fresh = self._sync.apply_awareness(bytes(update), None, time.monotonic())
        self._changed()
        if fresh is not None:
            self.notify(fresh, origin)  # the other local editors (a listener skips its own origin)

    def notify(self, update: bytes, origin: object) -> None:
        _notify(self._listeners, update, origin)  # type: ignore[arg-type]

    def subscribe(self, listener: AwarenessListener) -> Callable[[], None]:
        """Call `listener(update, origin)` with each new awareness update; the returned function unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None


class DocText:
    """A `Text` of the document, indexed in UTF-16 code units (Yjs' unit); each change is durable on return."""

    def __init__(self, handle: DocHandle, name: str) -> None:
        self._handle = handle
        self.name = name

    def _text(self, doc: Doc) -> Text:
        return doc.get(self.name, type=Text)

    def __str__(self) -> str:
        return str(self._text(self._handle.doc))

    def __len__(self) -> int:
        return utf16_length(str(self))

    def insert(self, index: int, content: str) -> None:
        self._handle.edit(lambda doc: insert_utf16(self._text(doc), index, content))

    def delete(self, index: int, length: int) -> None:
        self._handle.edit(lambda doc: delete_utf16(self._text(doc), index, length))

    def replace(self, content: str) -> None:
        """Make the text `content` with the smallest single edit (what differs between the common prefix and
        suffix is deleted and inserted), so concurrent edits elsewhere in the text survive."""
        def change(doc: Doc) -> None:
            text = self._text(doc)
            old = str(text)
            start = 0
            while start < min(len(old), len(content)) and old[start] == content[start]:
                start += 1
            end = 0
            while end < min(len(old), len(content)) - start and old[-1 - end] == content[-1 - end]:
                end += 1
            at = utf16_length(old[:start])
            removed = old[start:len(old) - end]
            if removed:
                delete_utf16(text, at, utf16_length(removed))
            added = content[start:len(content) - end]
            if added:
                insert_utf16(text, at, added)
        self._handle.edit(change)


class DocHandle:
    """One document this node holds (see the module docstring)."""

    def __init__(self, held: HeldDoc, sync: DocSync, changed: Callable[[DocHandle], None],
                 title: str | None = None) -> None:
        self.held = held
        self.sync = sync
        self.title = title
        self._changed = changed
        self._listeners: list[UpdateListener] = []
        self.awareness = DocAwareness(sync, lambda: changed(self))

    @property
    def id(self) -> str:
        return self.held.doc_id.hex()

    @property
    def link(self) -> str:
        """The link to share, with every key this node holds."""
        return self.held.keys.link()

    @property
    def read_link(self) -> str:
        """The link without the write key (read access; just the name when this node cannot read either)."""
        return self.held.keys.reader().link()

    @property
    def name_link(self) -> str:
        return LINK_PREFIX + b32encode(self.held.doc_id)

    @property
    def writable(self) -> bool:
        return self.held.writable

    @property
    def readable(self) -> bool:
        return self.held.readable

    @property
    def doc(self) -> Doc:
        doc = self.held.doc
        if doc is None:
            raise ReadOnlyDocument("this node holds no read key for the document (it only relays it)")
        return doc

    def text(self, name: str = "text") -> DocText:
        return DocText(self, name)

    def map(self, name: str) -> Map:
        """A `Map` of the document; change it inside `edit` so the change is signed, stored and sent."""
        return self.doc.get(name, type=Map)

    def array(self, name: str) -> Array:
        return self.doc.get(name, type=Array)

    def edit(self, change: Callable[[Doc], None]) -> None:
        """Apply `change` to the document in one signed update; durable when this returns, then sent to the peers.
        ReadOnlyDocument without a writer key."""
        result = self.held.edit(change)
        if result is None:
            return
        envelope, update = result
        self.sync.publish(envelope)
        self.notify(update, "local")
        self._changed(self)

    async def apply_local(self, update: bytes) -> None:
        """Apply a Yjs v1 update made by a local editor: checked, signed, stored (durable on return: this is the
        acknowledgement), then sent to the peers. A DocError subclass when refused (read-only, malformed,
        oversized, or needing changes this document lacks)."""
        update = bytes(update)
        if not self.writable:
            raise ReadOnlyDocument("this node holds no writer key for the document")
        if len(update) + TAG_SIZE > MAX_UPDATE_SIZE:
            raise UpdateTooLarge(f"an update of {len(update)} bytes is over the {MAX_UPDATE_SIZE}-byte limit")
        self.held.check_update(update)
        self.edit(lambda doc: doc.apply_update(update))

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """The Yjs v1 update holding what a peer at `state_vector` lacks. DocError when it is not a state vector."""
        try:
            return self.doc.get_update(bytes(state_vector))
        except Exception as exc:  # pycrdt raises ValueError for a malformed state vector
            raise DocError(f"not a Yjs state vector: {exc}") from None

    def notify(self, update: bytes, origin: str) -> None:
        _notify(self._listeners, update, origin)  # type: ignore[arg-type]

    def subscribe(self, listener: UpdateListener) -> Callable[[], None]:
        """Call `listener(update, origin)` with each Yjs update applied to the document, origin "local" or
        "remote"; the returned function unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def info(self) -> DocInfo:
        size = len(self.held.doc.get_update()) if self.held.doc is not None else 0
        return DocInfo(self.id, self.name_link, self.title, self.writable, self.readable, size, len(self.sync.peers))
