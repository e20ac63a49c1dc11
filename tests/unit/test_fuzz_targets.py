"""Every atheris target in tests/fuzz/ keeps working without atheris: it imports, its seed corpus runs, and a
few hundred generated inputs (random, and damaged seeds) raise nothing but the errors it lets through."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import mutated

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
EXPECTED = {
    "fuzz_bencode", "fuzz_cli_render", "fuzz_extensions", "fuzz_metainfo", "fuzz_noise", "fuzz_tracker", "fuzz_wire",
}


def load(path: Path) -> ModuleType:
    """Import a target from its file, under a name of its own (tests/fuzz is not a package)."""
    name = f"peerloom_fuzz_target_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


TARGETS = {path.stem: load(path) for path in sorted(FUZZ_DIR.glob("fuzz_*.py"))}


def entry(module: ModuleType) -> Callable[[bytes], None]:
    return getattr(module, "TestOneInput", None) or module.fuzz_one_input


def seeds(module: ModuleType) -> list[bytes]:
    return module.seeds() if hasattr(module, "seeds") else []


def test_every_target_is_found() -> None:
    assert set(TARGETS) >= EXPECTED


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_shape(name: str) -> None:
    module = TARGETS[name]
    assert module.__doc__ and "Run: `python tests/fuzz/" in module.__doc__
    assert callable(entry(module)) and callable(module.main)
    assert "atheris" not in module.__dict__  # atheris is imported inside main(), never at import time
    entry(module)(b"")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_runs_and_reaches_every_target(name: str) -> None:
    module = TARGETS[name]
    corpus = seeds(module)
    for data in corpus:
        entry(module)(data)
    if corpus:
        assert {data[0] % len(module._TARGETS) for data in corpus} == set(range(len(module._TARGETS)))


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
        entry(module)(data)

    run()
