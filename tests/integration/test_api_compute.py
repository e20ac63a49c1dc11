"""The daemon's compute routes in-process, against a volunteer node on loopback: submit a job with the volunteer to
dial, follow its progress, read its results and the volunteer's record, cancel a job, each reply in the shape
openapi.json gives;
bad input refused with one JSON error and the right 4xx."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.compute_modules import SIGNAL_SEARCH, noisy_tone, signal_peak
from support.swarm import node

from peerloom.api.server import OPENAPI_FILE, allowed_hosts, make_app
from peerloom.api.service import Daemon

pytestmark = pytest.mark.timeout(60)
TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuvwxyz"
V1 = "/api/v1/compute"
SCHEMAS = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]


def has_shape(value: dict[str, Any], name: str) -> None:
    """`value` has every field openapi.json's schema `name` requires, each of the JSON type it says."""
    schema = SCHEMAS[name]
    assert set(schema["required"]) <= set(value), set(schema["required"]) - set(value)
    if schema.get("additionalProperties") is False:
        assert set(value) <= set(schema["properties"])
    kinds = {"string": str, "integer": int, "number": int | float, "boolean": bool, "null": type(None),
             "object": dict, "array": list}
    for key, field in schema["properties"].items():
        types = field.get("type", [])
        types = [types] if isinstance(types, str) else types
        assert key not in value or not types or isinstance(value[key], tuple(kinds[t] for t in types)), key


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        async with self.client.request(method, path, headers={"X-Peerloom-Token": TOKEN}, **kwargs) as response:
            body = await response.read()
            assert response.status == expect, (response.status, body[:300])
            reply = json.loads(body)
            if expect >= 400:
                assert list(reply) == ["error"] and reply["error"]
            return reply


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    async with node(tmp_path, "daemon", pubsub=False) as daemon_node, \
            node(tmp_path, "volunteer", pubsub=False, compute_volunteer=True, compute_cores=1) as volunteer:
        daemon = Daemon(daemon_node, tmp_path / "downloads")
        await daemon.start()
        hosts: set[str] = set()
        client = TestClient(TestServer(make_app(daemon, TOKEN, hosts), host="127.0.0.1"))
        await client.start_server()
        hosts |= allowed_hosts("127.0.0.1", client.port or 0)
        try:
            yield Api(client), str(volunteer.secure_addrs[0])
        finally:
            await client.close()
            await daemon.stop()


async def test_submit_follow_and_read_a_job(served: tuple[Api, str]) -> None:
    api, volunteer = served
    chunks = [noisy_tone(256, 30 + i, seed=i) for i in range(3)]
    body = {"module_b64": base64.b64encode(SIGNAL_SEARCH.read_bytes()).decode(), "quorum": 1,
            "inputs": [{"name": f"c{i}", "data_b64": base64.b64encode(c).decode()} for i, c in enumerate(chunks)],
            "peers": [volunteer], "wall_seconds": 30}
    job = await api.call("POST", f"{V1}/jobs", 201, json=body)
    has_shape(job, "ComputeJob")
    assert job["units"] == 3 and job["quorum"] == 1 and job["dial_failures"] == []
    async with asyncio.timeout(40):
        while not (job := await api.call("GET", f"{V1}/jobs/{job['id']}"))["finished"]:
            await asyncio.sleep(0.1)
    assert job["validated"] == 3
    results = await api.call("GET", f"{V1}/jobs/{job['id']}/results")
    has_shape(results, "ComputeResults")
    peaks = [int(base64.b64decode(u["output_b64"]).split()[0]) for u in results["units"]]
    assert peaks == [signal_peak(c)[0] for c in chunks] and [u["name"] for u in results["units"]] == ["c0", "c1", "c2"]
    listed = await api.call("GET", f"{V1}/jobs")
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    (row,) = (await api.call("GET", f"{V1}/volunteers"))["volunteers"]
    has_shape(row, "ComputeVolunteer")
    assert row["peer_id"] == volunteer.rsplit("/", 1)[-1] and row["wins"] == 3 and not row["flagged"]
    status = await api.call("GET", f"{V1}/status")
    has_shape(status, "ComputeStatus")
    assert status["jobs"] == 1 and status["running"] == 0 and not status["volunteering"]
    await api.call("POST", f"{V1}/jobs/{job['id']}/cancel", 409)  # finished: nothing to cancel


async def test_cancel_a_running_job(served: tuple[Api, str]) -> None:
    api, _ = served
    body = {"module_b64": base64.b64encode(SIGNAL_SEARCH.read_bytes()).decode(), "quorum": 1,
            "inputs": [{"name": "c0", "data_b64": base64.b64encode(noisy_tone(256, 30, seed=0)).decode()}]}
    job = await api.call("POST", f"{V1}/jobs", 201, json=body)  # no volunteer: it waits for one
    assert not job["finished"] and not job["cancelled"]
    cancelled = await api.call("POST", f"{V1}/jobs/{job['id']}/cancel")
    has_shape(cancelled, "ComputeJob")
    assert cancelled["finished"] and cancelled["cancelled"] and cancelled["validated"] == 0
    assert (await api.call("POST", f"{V1}/jobs/{job['id']}/cancel"))["cancelled"]  # again: the job as it is
    assert (await api.call("GET", f"{V1}/status"))["running"] == 0
    await api.call("POST", f"{V1}/jobs/00ff/cancel", 404)


@pytest.mark.parametrize(("body", "status"), [
    ({"inputs": [{"name": "a", "data_b64": "AA=="}]}, 400),  # no module
    ({"module_b64": "not base64!", "inputs": [{"name": "a", "data_b64": "AA=="}]}, 400),
    ({"module_b64": "AA==", "inputs": []}, 400),
    ({"module_b64": "AA==", "inputs": [{"name": "a", "data_b64": "AA=="}], "quorum": 0}, 400),
    ({"module_b64": "AA==", "inputs": [{"name": "a", "data_b64": "AA=="}], "fuel": -1}, 400),
    ({"module_b64": "AA==", "inputs": [{"name": "a", "data_b64": "AA=="}], "peers": ["x"] * 17}, 400),
])
async def test_bad_submissions_are_refused(served: tuple[Api, str], body: dict[str, Any], status: int) -> None:
    api, _ = served
    await api.call("POST", f"{V1}/jobs", status, json=body)


async def test_unknown_jobs_and_unreachable_volunteers(served: tuple[Api, str]) -> None:
    api, _ = served
    await api.call("GET", f"{V1}/jobs/00ff", 404)
    await api.call("GET", f"{V1}/jobs/not-hex/results", 404)
    await api.call("POST", f"{V1}/volunteers", 502, json={"addr": "/ip4/127.0.0.1/tcp/1"})
    await api.call("POST", f"{V1}/volunteers", 400, json={"addr": 5})
