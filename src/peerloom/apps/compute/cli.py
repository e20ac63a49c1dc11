"""`peerloom compute submit|volunteer|status|jobs|volunteers`: volunteer computing from the command line.

`submit` runs a job (a WASI module over input files, one work unit each) and writes each unit's result to -o DIR as
a file named after its input (`NAME.out`, or `NAME.err` for a unit that failed), with a progress bar of units done,
validated and in flight and of volunteers. It hands the job to the daemon running for the home when there is one,
else runs a node of its own that dials the `--peer` volunteers (and any the peer store remembers); a submitter
stopped half-way (Ctrl-C, a crash, SIGKILL) resumes the same job when the same command runs again: validated units
are kept in the home's state and never sent out again. `volunteer` opts a node in, with limits, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from peerloom.cli.common import (
    UserError,
    err,
    fail,
    guarded,
    out,
    parse_secure_peers,
    parse_size,
    print_json,
    printable,
    usage,
)
from peerloom.cli.options import HomeOption, HostOption, JsonOption, NoDaemonOption, SecurePortOption
from peerloom.cli.running import home_or_default, node_settings, run, sleep_or_stop
from peerloom.cli.via_daemon import running_daemon
from peerloom.errors import PeerloomError

from .interface import MAX_QUORUM, result_name

if TYPE_CHECKING:
    from peerloom.api.client import DaemonClient
    from peerloom.codec.multiaddr import Multiaddr
    from peerloom.node import Node
    from peerloom.settings import Settings

    from .service import ComputeService

REFRESH = 0.25  # seconds between progress updates

PeerOption = Annotated[
    list[str] | None,
    typer.Option("--peer", metavar="MULTIADDR",
                 help="A volunteer to dial on the secure layer, /ip4/HOST/tcp/PORT[/p2p/PEERID] (repeat for more)."),
]


def compute_of(node: Node) -> ComputeService:
    if node.compute is None:
        fail("volunteer computing is off in this node's settings")
    return node.compute


def read_inputs(paths: list[Path]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each input file; two inputs with one name would overwrite each other's result."""
    names: dict[str, Path] = {}
    inputs = []
    for path in paths:
        name = result_name(path.name)
        if name in names:
            raise UserError(f"two inputs give the result name {name!r}: {names[name]} and {path}")
        names[name] = path
        try:
            inputs.append((name, path.read_bytes()))
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror}") from None
    return inputs


def write_results(directory: Path, units: list[dict[str, Any]]) -> tuple[int, int]:
    """Each unit's result as DIR/NAME.out (its output) or DIR/NAME.err (why it failed); (validated, failed)."""
    directory.mkdir(parents=True, exist_ok=True)
    done = failed = 0
    for unit in units:
        name = result_name(unit["name"])
        if unit["output"] is not None:
            (directory / f"{name}.out").write_bytes(unit["output"])
            done += 1
        else:
            (directory / f"{name}.err").write_text((unit["error"] or "not settled") + "\n")
            failed += 1
    return done, failed


def job_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} done, {task.fields[validated]} validated, "
                   "{task.fields[in_flight]} in flight, {task.fields[volunteers]} volunteers"),
        TimeElapsedColumn(),
        console=err,
    )


def finish(job: dict[str, Any], units: list[dict[str, Any]], output: Path, as_json: bool) -> None:
    done, failed = write_results(output, units)
    if as_json:
        print_json({**job, "output": str(output), "results": [
            {"name": u["name"], "file": result_name(u["name"]) + (".out" if u["output"] is not None else ".err"),
             "error": u["error"], "fuel": u["fuel"]} for u in units]})
    else:
        out.print(f"job {job['id']}: {done} validated, {failed} failed; results in {printable(output)}")
    if failed:
        fail(f"{failed} of {len(units)} units failed (their reasons are in {printable(output)}/*.err)")


def _update(progress: Progress, task: Any, p: dict[str, Any]) -> None:
    progress.update(task, completed=p["validated"] + p["errors"], validated=p["validated"],
                    in_flight=p["in_flight"], volunteers=p["available"])


# -- the commands ---------------------------------------------------------------------------------------
def submit(
    module: Annotated[Path, typer.Argument(help="The work-unit program: a WASI command module (.wasm).")],
    inputs: Annotated[list[Path], typer.Argument(help="Input files, one work unit each (the module's stdin).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the results (NAME.out / NAME.err).")],
    quorum: Annotated[int, typer.Option("--quorum", min=1, max=MAX_QUORUM,
                                        help="Volunteers that must agree on each unit's result.")] = 2,
    fuel: Annotated[int | None, typer.Option("--fuel", min=1, help="Instructions a unit may execute.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Memory a unit may use (e.g. 64M).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, help="Seconds a unit may run.")] = None,
    peer: PeerOption = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
    no_daemon: NoDaemonOption = False,
) -> None:
    """Run MODULE over each of INPUTS on volunteers, each unit validated by --quorum agreeing volunteers; write the
    results to -o DIR. Run it again after an interruption: the job resumes where it was."""
    from .interface import limits_from

    peers = usage(lambda: parse_secure_peers(peer))
    memory_bytes = usage(lambda: parse_size(memory)) if memory else None
    try:
        limits = limits_from(fuel, memory_bytes, timeout)
    except ValueError as exc:
        fail(str(exc), 2)
    wasm = usage(lambda: read_inputs([module]))[0][1]
    units = usage(lambda: read_inputs(inputs))
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        guarded(lambda: run(lambda stop: submit_via_daemon(client, wasm, units, quorum, limits, peers, output,
                                                           as_json, stop)))
        return
    from peerloom.node import Node

    settings = node_settings(no_dht=True, no_lsd=True)
    settings.secure_port = port

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            compute = compute_of(node)
            job = await compute.submit(wasm, units, quorum, limits=limits)
            failures = []
            for addr in peers:
                try:
                    await compute.add_volunteer(addr)
                except PeerloomError as exc:
                    failures.append(f"{addr}: {exc}")
            if peers and len(failures) == len(peers) and not job.finished.is_set():
                fail(f"no --peer volunteer answered: {'; '.join(failures)}")
            for line in failures:
                err.print(f"note: {printable(line)}")
            with job_progress() as progress:
                task = progress.add_task(f"job {job.id[:12]}", total=len(units), validated=0, in_flight=0,
                                         volunteers=0)
                while not job.finished.is_set() and not stop.is_set():
                    _update(progress, task, job.progress())
                    await sleep_or_stop(stop, REFRESH, job.finished)
                _update(progress, task, job.progress())
            if not job.finished.is_set():
                fail(f"stopped; run the same command again to resume job {job.id}", 130)
            outcomes = await job.wait()
            summary = job.to_json()
        finish(summary, [{"name": o.name, "output": o.output, "error": o.error, "fuel": o.fuel} for o in outcomes],
               output, as_json)
        return 0

    guarded(lambda: run(main))


async def submit_via_daemon(client: DaemonClient, wasm: bytes, units: list[tuple[str, bytes]], quorum: int,
                            limits: Any, peers: list[Multiaddr], output: Path, as_json: bool,
                            stop: asyncio.Event) -> int:
    body = {"module_b64": base64.b64encode(wasm).decode(), "quorum": quorum, "peers": [str(p) for p in peers],
            "inputs": [{"name": n, "data_b64": base64.b64encode(d).decode()} for n, d in units],
            "fuel": limits.fuel, "memory": limits.memory_bytes, "wall_seconds": limits.wall_seconds}
    job = await asyncio.to_thread(client.call, "POST", "/api/v1/compute/jobs", body)
    for line in job.get("dial_failures", []):
        err.print(f"note: {printable(line)}")
    path = f"/api/v1/compute/jobs/{job['id']}"
    with job_progress() as progress:
        task = progress.add_task(f"job {job['id'][:12]}", total=len(units), validated=0, in_flight=0, volunteers=0)
        while not job["finished"] and not stop.is_set():
            _update(progress, task, job)
            await sleep_or_stop(stop, REFRESH)
            job = await asyncio.to_thread(client.call, "GET", path)
        _update(progress, task, job)
    if not job["finished"]:
        fail(f"stopped watching; the daemon goes on with job {job['id']}", 130)
    results = await asyncio.to_thread(client.call, "GET", path + "/results")
    units_out = [{"name": u["name"], "error": u["error"], "fuel": u["fuel"],
                  "output": None if u["output_b64"] is None else base64.b64decode(u["output_b64"])}
                 for u in results["units"]]
    finish(job, units_out, output, as_json)
    return 0


# A volunteer's limits: `compute volunteer` and `daemon --volunteer` take the same options (volunteer_limits applies
# them to the settings).
CoresOption = Annotated[int, typer.Option("--cores", min=0, help="Units run at once (0: one per core).")]
MemoryOption = Annotated[str, typer.Option("--memory", help="Memory per unit (e.g. 256M).")]
CpuHoursOption = Annotated[float, typer.Option("--cpu-hours", min=0.001, help="CPU hours a day.")]
AllowOption = Annotated[list[str] | None, typer.Option(
    "--allow", metavar="PEERID", help="Take work only from this submitter (repeat for more; default: anyone).")]
DEFAULT_MEMORY, DEFAULT_CPU_HOURS = "256M", 24.0


def volunteer_limits(settings: Settings, cores: int, memory: str, cpu_hours: float, allow: list[str] | None) -> None:
    """Opt `settings` in to volunteering within these limits (the options above); a bad value exits with one line."""
    from peerloom.identity import PeerId

    memory_bytes = usage(lambda: parse_size(memory))
    for key in allow or []:
        try:
            PeerId.from_string(key)
        except (PeerloomError, ValueError):
            fail(f"--allow {printable(key)}: not a PeerId", 2)
    settings.compute_volunteer = True
    settings.compute_cores, settings.compute_memory, settings.compute_cpu_hours = cores, memory_bytes, cpu_hours
    settings.compute_submitters = list(allow or [])


def volunteer(
    cores: CoresOption = 0,
    memory: MemoryOption = DEFAULT_MEMORY,
    cpu_hours: CpuHoursOption = DEFAULT_CPU_HOURS,
    allow: AllowOption = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    port: SecurePortOption = 0,
    listen: HostOption = "0.0.0.0",
) -> None:
    """Run other nodes' work units in the sandbox, within these limits, until Ctrl-C. Prints this node's address
    for submitters' --peer."""
    from peerloom.node import Node

    settings = node_settings(no_dht=True, no_lsd=True)
    settings.secure_port = port
    volunteer_limits(settings, cores, memory, cpu_hours, allow)

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host=listen, settings=settings) as node:
            status = compute_of(node).status()
            addrs = [str(a) for a in node.secure_addrs]
            if as_json:
                print_json({"peer_id": str(node.identity.peer_id), "addrs": addrs, **status["volunteer"]})
            else:
                err.print(f"volunteering {status['volunteer']['slots']} task slots; this node is "
                          f"{node.identity.peer_id}, reachable at {', '.join(addrs)}")
            await stop.wait()
        return 0

    guarded(lambda: run(main))


def _local(home: Path | None, no_daemon: bool, path: str, local: Any, method: str = "GET") -> Any:
    """The daemon's answer to `method` `path` when one runs for the home, else `local(node)` on a node of our own
    that works on the home's state and stops at once."""
    client = None if no_daemon else running_daemon(home)
    if client is not None:
        return guarded(lambda: client.call(method, path))
    from peerloom.node import Node

    settings = node_settings(no_dht=True, no_lsd=True, no_mdns=True)
    settings.trackers = False
    result: dict[str, Any] = {}

    async def main(stop: asyncio.Event) -> int:
        async with Node(home_or_default(home), host="127.0.0.1", settings=settings) as node:
            result["value"] = local(compute_of(node))
        return 0

    guarded(lambda: run(main))
    return result["value"]


def status(as_json: JsonOption = False, home: HomeOption = None, no_daemon: NoDaemonOption = False) -> None:
    """This node's part in volunteer computing: its jobs, and as a volunteer its offer and credit."""
    data = _local(home, no_daemon, "/api/v1/compute/status", lambda c: c.status())
    if as_json:
        print_json(data)
        return
    out.print(f"jobs: {data['jobs']} ({data['running']} running); volunteers connected: {data['volunteers']}")
    offer = data.get("volunteer")
    if offer:
        out.print(f"volunteering: {offer['slots']} slots, {offer['active']} busy, {offer['ran']} units run, "
                  f"{offer['cpu_seconds_left']:.0f} CPU seconds left today")
        for peer, credit in offer["credit"].items():
            out.print(f"  credit from {printable(peer)}: {credit['units']} units, {credit['fuel']} fuel")
    else:
        out.print("not volunteering (peerloom compute volunteer)")


def jobs(as_json: JsonOption = False, home: HomeOption = None, no_daemon: NoDaemonOption = False) -> None:
    """The jobs this node submitted, with their progress."""
    rows = _local(home, no_daemon, "/api/v1/compute/jobs", lambda c: {"jobs": [j.to_json() for j in c.jobs()]})
    if as_json:
        print_json(rows)
        return
    if not rows["jobs"]:
        err.print("no job")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("Job", min_width=32, no_wrap=True)  # an id is copied whole, never cut to fit a terminal
    for column in ("Units", "Validated", "Errors", "Quorum", "State", "Created"):
        table.add_column(column)
    for job in rows["jobs"]:
        table.add_row(job["id"], str(job["units"]), str(job["validated"]), str(job["errors"]), str(job["quorum"]),
                      "cancelled" if job.get("cancelled") else "finished" if job["finished"] else "running",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created"])))
    out.print(table)


def cancel(job: Annotated[str, typer.Argument(metavar="JOB", help="The job's id (`compute jobs`).")],
           as_json: JsonOption = False, home: HomeOption = None, no_daemon: NoDaemonOption = False) -> None:
    """Cancel a running job: its units not validated yet go to volunteers no more; it stays cancelled."""
    if not re.fullmatch(r"[0-9a-f]{32}", job):
        fail(f"{printable(job)}: not a job id (32 hex digits, as `compute jobs` shows)", 2)

    def local(compute: ComputeService) -> dict[str, Any]:
        found = compute.job(job)
        if not found.cancel() and not found.cancelled:
            raise PeerloomError(f"job {job} has already finished")
        return found.to_json()

    row = _local(home, no_daemon, f"/api/v1/compute/jobs/{job}/cancel", local, "POST")
    if as_json:
        print_json(row)
    else:
        out.print(f"job {row['id']} cancelled: {row['validated']} of {row['units']} units validated")


def volunteers(as_json: JsonOption = False, home: HomeOption = None, no_daemon: NoDaemonOption = False) -> None:
    """The volunteers this node (as a submitter) knows: reputation, votes won and lost, credit, flagged."""
    rows = _local(home, no_daemon, "/api/v1/compute/volunteers", lambda c: {"volunteers": c.volunteers()})
    if as_json:
        print_json(rows)
        return
    if not rows["volunteers"]:
        err.print("no volunteer known")
        return
    table = Table(box=None, header_style="bold")
    widest = max(len(r["peer_id"]) for r in rows["volunteers"])
    table.add_column("Volunteer", min_width=widest)
    for column in ("Reputation", "Won", "Lost", "Lost replicas", "Credit", "Flagged"):
        table.add_column(column, justify="right")
    for r in rows["volunteers"]:
        table.add_row(printable(r["peer_id"]), f"{r['reputation']:.3f}", str(r["wins"]), str(r["losses"]),
                      str(r["failures"]), str(r["credit"]), "yes" if r["flagged"] else "no")
    out.print(table)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Volunteer computing: sandboxed WebAssembly work units, results verified by quorum.",
                        no_args_is_help=True, rich_markup_mode=None)
    group.command()(submit)
    group.command()(volunteer)
    group.command()(status)
    group.command()(jobs)
    group.command()(volunteers)
    group.command()(cancel)
    app.add_typer(group, name="compute")
