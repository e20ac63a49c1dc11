"""`peerloom btc` from the command line: `generate` mines regtest blocks into a home, `tip` reads them back (text
and JSON), a running node is what `peers` and `mempool` report, and mistakes are one line with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import peerloom

from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.runtime import BtcNode


async def test_generate_then_tip_and_the_running_node_s_peers_and_mempool(tmp_path: Path) -> None:
    home = str(tmp_path)
    code, out, _ = await peerloom("btc", "generate", "12", "--home", home, "--json")
    assert code == 0
    mined = json.loads(out)
    assert mined["height"] == 12
    code, out, _ = await peerloom("btc", "tip", "--home", home)
    assert code == 0 and out.split() == ["12", mined["hash"]]
    code, _, err = await peerloom("btc", "peers", "--home", home)
    assert code == 1 and err.count("\n") == 1 and "no btc node is running" in err
    async with BtcNode(tmp_path, REGTEST, listen=("127.0.0.1", 0), workers=0) as node:
        code, out, _ = await peerloom("btc", "tip", "--home", home, "--json")
        assert code == 0 and json.loads(out) == {"network": "regtest", "height": 12, "hash": mined["hash"],
                                                 "running": True}
        code, out, _ = await peerloom("btc", "mempool", "--home", home, "--json")
        assert code == 0 and json.loads(out) == []
        code, _, err = await peerloom("btc", "generate", "1", "--home", home)
        assert code == 1 and "stop it first" in err
        assert node.chain.height == 12
    code, _, err = await peerloom("btc", "tip", "--home", home, "--network", "moon")
    assert code == 2 and "not one of" in err
