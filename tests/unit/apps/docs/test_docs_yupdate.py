"""The strict Yjs update reader: what it reads from real pycrdt updates, and what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from peerloom.apps.docs.yupdate import YUpdateError, missing_dependencies, parse_state_vector, parse_update


def rich_doc() -> Doc:
    doc = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "héllo 日本語 a😀b")
    text.format(0, 1, {"bold": True})
    doc.get("m", type=Map)["x"] = {"k": [1, 2.5, None, True, "s"], "n": -(2**40)}
    array = doc.get("a", type=Array)
    array.append(b"\x00\xff")
    array.append(Text("nested"))
    del text[0:1]
    return doc


def test_a_pycrdt_update_of_every_kind_reads_to_its_state_vector() -> None:
    doc = rich_doc()
    shape = parse_update(doc.get_update())
    state = parse_state_vector(doc.get_state())
    assert {client: end for client, (_, end) in shape.ranges.items()} == state
    assert all(start == 0 for start, _ in shape.ranges.values())
    assert shape.deletes and missing_dependencies(shape, {}) == []


def test_a_later_update_needs_what_came_before() -> None:
    doc = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "hello")
    state = doc.get_state()
    text.insert(5, " world")
    del text[0:1]
    second = parse_update(doc.get_update(state))
    assert missing_dependencies(second, parse_state_vector(state)) == []
    problems = missing_dependencies(second, {})
    assert any("starts at clock 5" in p for p in problems) and any("deletes unseen" in p for p in problems)
    assert any("refers to unseen" in p for p in problems)


@pytest.mark.parametrize(("data", "why"), [
    (b"", "truncated"),
    (b"\x00\x00\x00", "after the Yjs update"),
    (b"\x01\x01\x05\x00\x0b\x01\x01t", "unknown Yjs content type"),  # one struct with content reference 11
    (b"\x7f\x00\x00", "entries in"),  # 127 clients claimed in 2 bytes
    (b"\x00\x01\x05\x01\x00\x00", "bad Yjs delete range"),  # a zero-length deletion
    (b"\x01\x01\x05\x00\x04\x01\x01t\x02\xff\xfe\x00", "not UTF-8"),  # a string item of invalid UTF-8
    (b"\x01\x01\x05\x00\x04\x01\x01t\x00\x00", "empty Yjs struct"),  # an empty string item
    (b"\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f", r"above 2\^53"),
    (b"\x01\x01\x05\x00\x08\x01\x01t\x01" + b"\x75\x01" * 70 + b"\x7e", "nested too deep"),
])
def test_malformed_updates_are_refused_with_the_reason(data: bytes, why: str) -> None:
    with pytest.raises(YUpdateError, match=why):
        parse_update(data)


def test_a_state_vector_reads_exactly() -> None:
    doc = rich_doc()
    assert parse_state_vector(doc.get_state()) == {doc.client_id: parse_update(doc.get_update()).ranges[
        doc.client_id][1]}
    with pytest.raises(YUpdateError):
        parse_state_vector(doc.get_state() + b"\x00")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.text(min_size=1, max_size=5), st.booleans()), max_size=12))
def test_random_edits_read_back_and_need_nothing_more(edits: list[tuple[int, str, bool]]) -> None:
    doc = Doc()
    text = doc.get("t", type=Text)
    for position, content, delete in edits:
        current = str(text)
        at = len(current[:position].encode())
        if delete and current:
            del text[at:at + len(current[position:position + 1].encode())]
        else:
            text.insert(at, content)
    shape = parse_update(doc.get_update())
    assert missing_dependencies(shape, {}) == []
    assert {c: end for c, (_, end) in shape.ranges.items()} == parse_state_vector(doc.get_state())
