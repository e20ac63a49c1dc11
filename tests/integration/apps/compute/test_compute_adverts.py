"""Volunteers found through pub/sub: a submitter given no address of a volunteer hears its capacity advert, relayed
by another volunteer it is connected to, dials it and gives it work (three nodes in one process on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import wasmtime
from support.swarm import fast_settings

from peerloom.apps.compute.sandbox import Limits
from peerloom.apps.compute.service import ComputeService
from peerloom.node import Node

pytestmark = pytest.mark.timeout(90)
NOOP = bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))


def compute(node: Node) -> ComputeService:
    assert node.compute is not None
    return node.compute


async def test_a_submitter_finds_a_volunteer_it_has_no_address_for_through_its_advert(tmp_path: Path) -> None:
    near = Node(tmp_path / "near", host="127.0.0.1", settings=fast_settings(compute_volunteer=True, compute_cores=1))
    far = Node(tmp_path / "far", host="127.0.0.1", settings=fast_settings(compute_volunteer=True, compute_cores=1))
    submitter = Node(tmp_path / "s", host="127.0.0.1", settings=fast_settings())
    for volunteer in (near, far):
        compute(volunteer).advert_interval = 0.3
    started: list[Node] = []
    try:
        for node in (near, far, submitter):
            await node.start()
            started.append(node)
        await far.secure_host.connect(near.secure_addrs[0])
        await submitter.secure_host.connect(near.secure_addrs[0])
        far_id = far.identity.peer_id
        assert far_id not in submitter.secure_host.connections
        # quorum 2 on distinct volunteers: the job can only finish once the far volunteer is found
        job = await compute(submitter).submit(NOOP, [b"%d" % i for i in range(6)], 2,
                                              limits=Limits(fuel=1000, wall_seconds=10))
        outcomes = await asyncio.wait_for(job.wait(), 60)
        assert all(o.output == b"" for o in outcomes)
        volunteers = {v["peer_id"]: v for v in compute(submitter).volunteers()}
        assert volunteers[str(far_id)]["wins"] == 6 and volunteers[str(near.identity.peer_id)]["wins"] == 6
    finally:
        for node in reversed(started):
            await node.stop()
