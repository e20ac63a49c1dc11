"""`peerloom btc node|tip|peers|mempool|generate|address|balance|send`: the Bitcoin node from the command line.

`node` runs a node in the foreground (`--connect HOST:PORT` peers, `--listen` for inbound ones) until Ctrl-C.
`tip`, `peers` and `mempool` read the status the running node of the home writes; with no node running, `tip`
reads the home's chain state itself. `generate N` mines N regtest blocks into the home's chain state (with no
node running on it) — so peerloom can be a chain's origin. `address`, `balance` and `send` use the home's wallet
(apps/btc/walletops.py); `send` needs the running node, which relays the payment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from peerloom.cli.common import UserError, fail, guarded, out, parse_host_port, print_json, usage
from peerloom.cli.options import HomeOption, JsonOption
from peerloom.cli.running import home_or_default, run, sleep_or_stop

NetworkOption = Annotated[
    str, typer.Option("--network", help="regtest, signet, testnet4 or mainnet.", metavar="NAME")
]
ConnectOption = Annotated[
    list[str] | None, typer.Option("--connect", metavar="HOST:PORT", help="A peer to keep connected (repeat).")
]
ListenOption = Annotated[
    str | None, typer.Option("--listen", metavar="HOST:PORT", help="Accept inbound peers on this address.")
]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=0, max=64, help="Processes verifying scripts (0: in the node's process).")
]


def _params(network: str) -> Any:
    from peerloom.apps.btc.params import NETWORKS

    if network not in NETWORKS:
        raise UserError(f"--network: {network!r} is not one of {', '.join(NETWORKS)}")
    return NETWORKS[network]


def _running_status(home: Path, network: str) -> dict[str, Any] | None:
    from peerloom.apps.btc.status import running_status

    return running_status(home, _params(network))


def _stored_tip(home: Path, network: str) -> dict[str, Any]:
    from peerloom.apps.btc.status import stored_tip
    from peerloom.state import State

    state = State(home / "state.sqlite")
    try:
        info = stored_tip(state, _params(network))
        return {k: info[k] for k in ("network", "height", "hash", "running")}
    finally:
        state.close()


def node(home: HomeOption = None, network: NetworkOption = "regtest", connect: ConnectOption = None,
         listen: ListenOption = None, workers: WorkersOption = 2) -> None:
    """Run a Bitcoin node: sync and validate the chain from its peers, keep a mempool, relay."""
    params = usage(lambda: _params(network))
    peers = usage(lambda: [parse_host_port(c, "--connect") for c in connect or []])
    bind = usage(lambda: parse_host_port(listen, "--listen", zero="any free port")) if listen else None
    where = home_or_default(home)

    async def main(stop: Any) -> int:
        from peerloom.apps.btc.runtime import BtcNode

        async with BtcNode(where, params, peers, bind, workers) as btc:
            out.print(f"btc node on {params.name}: height {btc.chain.height}"
                      + (f", listening on port {btc.port}" if btc.port else ""))
            last = -1
            while not stop.is_set():
                if btc.chain.height != last:
                    last = btc.chain.height
                    out.print(f"height {last} {btc.chain.tip.header.hash_hex} "
                              f"(headers {btc.chain.headers.height}, peers {len(btc.book.connected)})")
                await sleep_or_stop(stop, 1.0)
        return 0

    raise typer.Exit(guarded(lambda: run(main)))


def tip(home: HomeOption = None, network: NetworkOption = "regtest", json_output: JsonOption = False) -> None:
    """The tip's height and hash (of the running node, else of the home's chain state)."""
    usage(lambda: _params(network))
    where = home_or_default(home)
    status = _running_status(where, network)
    info = ({"network": network, "height": status["height"], "hash": status["hash"], "running": True}
            if status else guarded(lambda: _stored_tip(where, network)))
    if json_output:
        print_json(info)
    else:
        out.print(f"{info['height']} {info['hash']}")


def _show_running(home: Path | None, network: str, key: str, json_output: bool, line: Any) -> None:
    """Print the running node's `key` list (as JSON, or one `line(item)` each); one error line if none runs."""
    status = _running_status(home_or_default(home), network)
    if status is None:
        fail("no btc node is running on this home (start one with `peerloom btc node`)")
    if json_output:
        print_json(status[key])
    else:
        for item in status[key]:
            out.print(line(item))


def peers(home: HomeOption = None, network: NetworkOption = "regtest", json_output: JsonOption = False) -> None:
    """The running node's peers."""
    _show_running(home, network, "peers", json_output, lambda p: (
        f"{p['address']} {'out' if p['outbound'] else 'in'} {p['user_agent']} height {p['start_height']}"))


def mempool(home: HomeOption = None, network: NetworkOption = "regtest", json_output: JsonOption = False) -> None:
    """The running node's mempool: transactions with fee and size."""
    _show_running(home, network, "mempool", json_output,
                  lambda e: f"{e['txid']} fee {e['fee']} vsize {e['vsize']}")


def generate(count: Annotated[int, typer.Argument(min=1, max=10_000, help="Blocks to mine.")],
             home: HomeOption = None, network: NetworkOption = "regtest",
             script: Annotated[str, typer.Option("--to-script", metavar="HEX",
                                                 help="Output script of the coinbases (default OP_TRUE).")] = "51",
             json_output: JsonOption = False) -> None:
    """Mine COUNT regtest blocks on the home's chain (no node may be running on it)."""
    if network != "regtest":
        fail("generate mines regtest blocks only", 2)
    where = home_or_default(home)
    script_pubkey = usage(lambda: _hex(script))
    if _running_status(where, network) is not None:
        fail("a btc node is running on this home: stop it first (it owns the chain state)")

    def mine() -> dict[str, Any]:
        import time

        from rich.progress import Progress

        from peerloom.apps.btc.miner import assemble_block, solve
        from peerloom.apps.btc.params import REGTEST
        from peerloom.apps.btc.runtime import open_chain
        from peerloom.apps.btc.scriptcheck import InlineScriptChecker
        from peerloom.state import State

        state = State(where / "state.sqlite")
        try:
            chain = open_chain(where, REGTEST, state, InlineScriptChecker())
            with Progress(transient=True, disable=json_output) as progress:
                task = progress.add_task("mining", total=count)
                for _ in range(count):
                    prev = chain.tip
                    when = max(int(time.time()), chain.headers.median_time_past(prev) + 1)
                    height = prev.height + 1
                    block = assemble_block(prev.hash, height, when, prev.header.bits, (), script_pubkey,
                                           chain.rules.subsidy(height))
                    chain.add_block(solve(block, REGTEST.pow_limit), int(time.time()))
                    progress.advance(task)
            return {"height": chain.height, "hash": chain.tip.header.hash_hex}
        finally:
            state.close()

    info = guarded(mine)
    if json_output:
        print_json(info)
    else:
        out.print(f"{info['height']} {info['hash']}")


def address(home: HomeOption = None, network: NetworkOption = "regtest",
            kind: Annotated[str, typer.Option("--type", metavar="TYPE",
                                              help="p2wpkh (BIP 84, bech32) or p2tr (BIP 86, bech32m).")] = "p2wpkh",
            json_output: JsonOption = False) -> None:
    """A new receive address of the home's wallet (made, with a fresh seed, on first use)."""
    from peerloom.apps.btc.walletops import new_address

    params = usage(lambda: _params(network))
    if kind not in ("p2wpkh", "p2tr"):
        fail(f"--type: {kind!r} is not p2wpkh or p2tr", 2)
    info = guarded(lambda: new_address(home_or_default(home), params, kind))
    print_json(info) if json_output else out.print(info["address"])


def balance(home: HomeOption = None, network: NetworkOption = "regtest", json_output: JsonOption = False) -> None:
    """The wallet's balance: confirmed, immature (young coinbase outputs) and unconfirmed, in satoshis."""
    from peerloom.apps.btc.walletops import balance as wallet_balance

    params = usage(lambda: _params(network))
    info = guarded(lambda: wallet_balance(home_or_default(home), params))
    if json_output:
        print_json(info)
    else:
        out.print(f"confirmed {info['confirmed']} sat, immature {info['immature']} sat, unconfirmed "
                  f"{info['unconfirmed']} sat" + ("" if info["node_running"] else " (no node running: no mempool)"))


def send(to: Annotated[str, typer.Argument(metavar="ADDR", help="A bech32/bech32m address.")],
         amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="Bitcoin (0.5) or satoshis (15000sat).")],
         home: HomeOption = None, network: NetworkOption = "regtest",
         fee_rate: Annotated[float, typer.Option("--fee-rate", min=1.0, max=10_000.0, metavar="SAT/VB",
                                                 help="Fee rate in satoshis per virtual byte.")] = 2.0,
         json_output: JsonOption = False) -> None:
    """Pay AMOUNT to ADDR from the wallet through the running node (it relays the transaction); prints the txid."""
    from peerloom.apps.btc.walletops import parse_amount
    from peerloom.apps.btc.walletops import send as wallet_send

    params = usage(lambda: _params(network))
    value = guarded(lambda: parse_amount(amount))
    info = guarded(lambda: wallet_send(home_or_default(home), params, to, value, fee_rate))
    print_json(info) if json_output else out.print(info["txid"])


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UserError(f"--to-script: {text!r} is not hex") from None


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="A Bitcoin node: sync and validate the chain, mempool, regtest mining.",
                        no_args_is_help=True)
    for command in (node, tip, peers, mempool, generate, address, balance, send):
        group.command(command.__name__)(command)
    app.add_typer(group, name="btc")
