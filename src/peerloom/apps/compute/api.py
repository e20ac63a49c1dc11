"""The daemon's compute routes, mounted by `peerloom.api.server` under /api/v1/compute (documented in openapi.json).

- GET  /compute/status                 this node's part: its jobs, its volunteer offer and credit
- GET  /compute/jobs                   every job with its progress
- POST /compute/jobs                   submit (`module_b64`, `inputs: [{name, data_b64}]`, `quorum`, limits, `peers`)
- GET  /compute/jobs/{id}              one job's progress
- GET  /compute/jobs/{id}/results      its units' outcomes (output base64, or the error)
- GET  /compute/volunteers             what this node, as a submitter, knows of each volunteer
- POST /compute/volunteers             dial a volunteer (`addr`) and ask what it offers

Request bodies are bounded by the daemon's upload limit; the number of units and of peers to dial are bounded here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from peerloom.api.http import Handler, add_routes, json_body
from peerloom.api.service import ApiError, Daemon
from peerloom.errors import PeerloomError

from .interface import MAX_QUORUM, MAX_UNITS, job_json, limits_from, outcome_json
from .service import ComputeService

PREFIX = "/api/v1/compute"
MAX_DIAL = 16
DAEMON: web.AppKey[Daemon] = web.AppKey("compute_daemon")


def _compute(request: web.Request) -> ComputeService:
    service = request.app[DAEMON].node.compute
    if service is None:
        raise ApiError(503, "volunteer computing is off on this node")
    return service


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what} is not valid base64") from None


def _number(body: dict[str, Any], key: str, kind: type = int) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ApiError(400, f"'{key}' must be a positive number")
    return value


async def status(request: web.Request) -> web.Response:
    return web.json_response(_compute(request).status())


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response({"jobs": [job_json(job) for job in _compute(request).jobs()]})


async def submit(request: web.Request) -> web.Response:
    compute = _compute(request)
    body = await json_body(request)
    module = _b64(body.get("module_b64"), "'module_b64'")
    items = body.get("inputs")
    if not isinstance(items, list) or not items or len(items) > MAX_UNITS:
        raise ApiError(400, f"'inputs' must be a list of 1 to {MAX_UNITS} objects {{name, data_b64}}")
    inputs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ApiError(400, "each input is an object {name, data_b64}")
        inputs.append((item["name"][:200], _b64(item.get("data_b64"), "an input's 'data_b64'")))
    quorum = body.get("quorum", 2)
    if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= MAX_QUORUM:
        raise ApiError(400, f"'quorum' must be 1 to {MAX_QUORUM}")
    peers = body.get("peers", [])
    if not isinstance(peers, list) or len(peers) > MAX_DIAL or not all(isinstance(p, str) for p in peers):
        raise ApiError(400, f"'peers' must be a list of at most {MAX_DIAL} multiaddrs")
    try:
        limits = limits_from(_number(body, "fuel"), _number(body, "memory"), _number(body, "wall_seconds", float),
                             _number(body, "max_output"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        job = await compute.submit(module, inputs, quorum, limits=limits, adaptive=bool(body.get("adaptive")))
    except PeerloomError as exc:
        raise ApiError(400, str(exc)) from None
    failures = []
    for addr in peers:
        try:
            await compute.add_volunteer(addr)
        except (PeerloomError, ValueError) as exc:
            failures.append(f"{addr}: {exc}")
    return web.json_response({**job_json(job), "dial_failures": failures}, status=201)


def _job(request: web.Request) -> Any:
    try:
        return _compute(request).job(request.match_info["id"])
    except PeerloomError as exc:
        raise ApiError(404, str(exc)) from None


async def job_detail(request: web.Request) -> web.Response:
    return web.json_response(job_json(_job(request)))


async def cancel_job(request: web.Request) -> web.Response:
    job = _job(request)
    cancelled = job.cancel()
    if not cancelled and not job.cancelled:
        raise ApiError(409, f"job {job.id} has already finished")
    return web.json_response(job_json(job))


async def job_results(request: web.Request) -> web.Response:
    job = _job(request)
    outcomes = await job.outcomes()
    return web.json_response({"id": job.id, "finished": job.finished.is_set(),
                              "units": [outcome_json(o) for o in outcomes]})


async def list_volunteers(request: web.Request) -> web.Response:
    return web.json_response({"volunteers": _compute(request).volunteers()})


async def add_volunteer(request: web.Request) -> web.Response:
    compute = _compute(request)
    addr = (await json_body(request)).get("addr")
    if not isinstance(addr, str):
        raise ApiError(400, "'addr' must be a multiaddr string")
    try:
        peer = await compute.add_volunteer(addr)
    except (PeerloomError, ValueError) as exc:
        raise ApiError(502, f"{addr}: {exc}") from None
    return web.json_response({"peer_id": str(peer)}, status=201)


def mount(app: web.Application, daemon: Daemon) -> None:
    """Add the compute routes to the daemon's app."""
    app[DAEMON] = daemon
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/status", status),
        ("GET", "/jobs", list_jobs),
        ("POST", "/jobs", submit),
        ("GET", "/jobs/{id}", job_detail),
        ("GET", "/jobs/{id}/results", job_results),
        ("POST", "/jobs/{id}/cancel", cancel_job),
        ("GET", "/volunteers", list_volunteers),
        ("POST", "/volunteers", add_volunteer),
    ]
    add_routes(app, PREFIX, routes)
