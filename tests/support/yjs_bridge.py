"""A y-protocols endpoint over TCP in front of one `DocHandle`, for a Node.js Yjs client in tests.

The design (the honest one, as the browser editor's bridge does it): a Yjs client speaks plain y-protocols (sync
step 1/2 and updates carrying raw Yjs updates) to the node it trusts, the node that holds the document's write key,
over a local connection; the node checks each update (`DocHandle.apply_local`: the strict Yjs reader, a scratch
apply) and signs it with its own writer key before it stores and sends it to its peers as an envelope. Peers never
see an unsigned update: to them the client's edits are that node's. Each y-protocols message travels with its lib0
varUint length before it (TCP has no message boundaries).
"""

from __future__ import annotations

import asyncio
import contextlib

from peerloom.apps.docs.handle import DocHandle
from peerloom.codec.varint import decode_varint, encode_varint, read_frame

MAX_FRAME = 4 << 20
QUEUE = 100_000  # updates waiting for a slow client before it is dropped


def sync_message(kind: int, payload: bytes) -> bytes:
    body = encode_varint(0) + encode_varint(kind) + encode_varint(len(payload)) + payload
    return encode_varint(len(body)) + body


class YjsBridge:
    def __init__(self, handle: DocHandle) -> None:
        self.handle = handle
        self.server: asyncio.Server | None = None
        self.applied = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
        applying = False

        def forward(update: bytes, origin: str) -> None:
            if not applying:  # not the client's own update echoed back
                queue.put_nowait(sync_message(2, update))

        unsubscribe = self.handle.subscribe(forward)
        sender = asyncio.create_task(self._send(queue, writer))
        buffer = bytearray()
        try:
            while chunk := await reader.read(1 << 16):
                buffer += chunk
                pos = 0
                while (frame := read_frame(buffer, MAX_FRAME, pos)) is not None:
                    body, pos = frame
                    kind, at = decode_varint(body, 0)
                    if kind != 0:
                        continue  # awareness is not used by this client
                    sync, at = decode_varint(body, at)
                    length, at = decode_varint(body, at)
                    payload = body[at:at + length]
                    if sync == 0:  # step 1: answer with what it lacks, and ask for what we lack
                        queue.put_nowait(sync_message(1, self.handle.diff(payload)))
                        queue.put_nowait(sync_message(0, self.handle.state_vector()))
                    else:
                        applying = True
                        try:
                            await self.handle.apply_local(payload)
                        finally:
                            applying = False
                        self.applied += 1
                del buffer[:pos]
        finally:
            unsubscribe()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            writer.close()

    async def _send(self, queue: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
        while True:
            data = [await queue.get()]
            while not queue.empty():
                data.append(queue.get_nowait())
            writer.write(b"".join(data))
            await writer.drain()
