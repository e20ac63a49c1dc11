"""Every atheris target in tests/fuzz/ keeps working without atheris: it imports, it uses the shared harness, its seed
corpus runs, and a few hundred generated inputs (random, and damaged seeds) raise nothing but the errors it lets
through. tests/fuzz is on pytest's pythonpath, as it is on a target's own when atheris runs it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import harness
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import mutated

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
EXPECTED = {
    "fuzz_bencode", "fuzz_btc_chain", "fuzz_btc_p2p", "fuzz_btc_script", "fuzz_btc_wallet", "fuzz_cli_render",
    "fuzz_compute_wire", "fuzz_docs_bridge", "fuzz_docs_sync", "fuzz_docs_updates", "fuzz_exit", "fuzz_extensions",
    "fuzz_holepunch", "fuzz_krpc", "fuzz_libp2p_codecs", "fuzz_lsd", "fuzz_mdns", "fuzz_metainfo", "fuzz_mse",
    "fuzz_multistream", "fuzz_nat", "fuzz_noise", "fuzz_peer_record", "fuzz_pubsub_rpc", "fuzz_relay",
    "fuzz_tracker", "fuzz_upnp", "fuzz_utp", "fuzz_webseed", "fuzz_wire", "fuzz_yamux",
}
TARGETS = {path.stem: importlib.import_module(path.stem) for path in sorted(FUZZ_DIR.glob("fuzz_*.py"))}


def seeds(module: ModuleType) -> list[bytes]:
    return module.seeds() if hasattr(module, "seeds") else []


def test_every_target_is_found() -> None:
    assert set(TARGETS) >= EXPECTED


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_shape(name: str) -> None:
    """A target is its parsers and checks; the entry point and the atheris run are the harness's."""
    module = TARGETS[name]
    source = Path(module.__file__ or "").read_text()
    assert module.__doc__ and "Run: `python tests/fuzz/" in module.__doc__
    assert module.harness is harness and callable(module.TestOneInput)
    assert source.rstrip().endswith('if __name__ == "__main__":\n    harness.main(TestOneInput)')
    assert "atheris" not in module.__dict__ and "import atheris" not in source  # only the harness imports it
    module.TestOneInput(b"")


def test_the_harness_picks_by_the_first_byte_and_lets_through_only_the_allowed_errors() -> None:
    seen: list[tuple[str, bytes]] = []

    def first(data: bytes) -> None:
        seen.append(("first", data))
        raise KeyError(data)

    def second(data: bytes) -> None:
        seen.append(("second", data))
        raise ValueError(data)

    lenient = harness.Pick(first, (second, ValueError), allowed=KeyError)
    assert len(lenient) == 2
    lenient(b"")  # nothing to pick with: no target runs
    lenient(b"\x00ab")
    lenient(b"\x03cd")
    assert seen == [("first", b"ab"), ("second", b"cd")]
    strict = harness.Pick(first, second, allowed=ValueError)
    with pytest.raises(KeyError):  # an error the target may not raise escapes, and atheris reports a crash
        strict(b"\x02")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_runs_and_reaches_every_target(name: str) -> None:
    module = TARGETS[name]
    corpus = seeds(module)
    for data in corpus:
        module.TestOneInput(data)
    if corpus:
        picks = len(module.TestOneInput)
        assert {data[0] % picks for data in corpus} == set(range(picks))


def inputs(module: ModuleType) -> st.SearchStrategy[bytes]:
    corpus = seeds(module)
    random = st.binary(min_size=1, max_size=400)
    return st.one_of(random, mutated(st.sampled_from(corpus))) if corpus else random


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_generated_inputs_raise_only_the_typed_errors(name: str) -> None:
    module = TARGETS[name]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(inputs(module))
    def run(data: bytes) -> None:
        module.TestOneInput(data)

    run()
