"""Hypothesis strategies that damage valid encodings: inputs that get past a parser's first checks and reach
its deeper paths, which purely random bytes rarely do."""

from __future__ import annotations

from hypothesis import strategies as st

# Fragments that change the meaning of bencode (and of most length-prefixed formats) when spliced in.
TOKENS = (
    b"e", b"i", b"l", b"d", b"0:", b"1:", b"9:", b":", b"-", b"i0e", b"i-1e", b"i4294967296e",
    b"i99999999999999999999e", b"9999999999:", b"de", b"le", b"\x00", b"\xff", b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
)


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes], max_edits: int = 4) -> bytes:
    """One of `seeds` with up to `max_edits` byte flips, overwrites, deletions, insertions, duplications
    or a truncation."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(0, max_edits))):
        op = draw(st.sampled_from(("flip", "set", "delete", "insert", "token", "duplicate", "truncate")))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)
