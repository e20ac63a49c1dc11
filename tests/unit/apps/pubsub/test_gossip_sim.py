"""bench/gossip_sim.py at 50 nodes: the simulator runs the real router, every honest subscriber gets every message
through 1 % loss, and the nodes flooding bad signatures end up graylisted by the honest nodes connected to them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[4] / "bench" / "gossip_sim.py"


def load_sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gossip_sim", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_fifty_nodes_full_delivery_and_attackers_graylisted() -> None:
    sim = load_sim()
    config = sim.SimConfig(nodes=50, messages=10, attackers=0.1, warmup=5.0, drain=5.0, seed=7)
    result = sim.Simulation(config).run()
    assert result["attackers"] == 5
    assert result["delivery_rate"] == 1.0
    assert result["app_duplicates"] == 0
    assert result["honest_negative_links"] == 0  # scoring never turns on honest peers
    assert result["rpcs_dropped"] > 0  # the loss was really applied
    assert result["attacker_links"] > 0
    assert result["graylisted_fraction"] == 1.0
    assert 1 <= result["hops_p50"] <= result["hops_p99"]
    assert result["amplification"] >= 1.0
