"""The canonical-timestamp fast path of ``parse_iso_ms`` gives the general parser's answer: the same
epoch milliseconds, or the same InstantError message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.instants import InstantError, parse_iso, parse_iso_ms, to_ms


def _general(value: object) -> int | str:
    try:
        return to_ms(parse_iso(value, field="f"))  # type: ignore[arg-type]
    except InstantError as error:
        return str(error)


def _fast(value: object) -> int | str:
    try:
        return parse_iso_ms(value, field="f")  # type: ignore[arg-type]
    except InstantError as error:
        return str(error)


def _digits(count: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from("0123456789"), min_size=count, max_size=count)


# Canonical shapes with any digits (month 13, day 31 of February, hour 24, second 60, year 0000...).
canonical = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone: f"{y}-{mo}-{d}T{h}:{mi}:{s}{frac}{zone}",
    _digits(4),
    st.one_of(_digits(2), st.sampled_from(["01", "02", "12"])),
    st.one_of(_digits(2), st.sampled_from(["01", "28", "29", "30", "31"])),
    st.one_of(_digits(2), st.sampled_from(["00", "23", "24"])),
    st.one_of(_digits(2), st.sampled_from(["00", "59", "60"])),
    st.one_of(_digits(2), st.sampled_from(["00", "59", "60", "61"])),
    st.sampled_from(["", ".000", ".999", ".5", ".123456", ",123"]),
    st.sampled_from(["Z", "z", "+00:00", "+01:00", " Z", "Z "]),
)


@settings(max_examples=3000)
@given(canonical)
def test_fast_path_is_the_general_parser_on_canonical_shapes(value: str) -> None:
    assert _fast(value) == _general(value)


@settings(max_examples=1000)
@given(st.text(max_size=30))
def test_fast_path_is_the_general_parser_on_any_text(value: str) -> None:
    assert _fast(value) == _general(value)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T06:01:00.598Z",
        "2026-01-01T06:01:00Z",
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "2024-02-29T12:00:00Z",
        "2026-02-29T12:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "2026-01-01T06:01:00.598\u0661Z",
        "\u0662026-01-01T06:01:00Z",
        "",
        None,
        17,
    ],
)
def test_fast_path_edges(value: object) -> None:
    assert _fast(value) == _general(value)
    assert _fast(value) == _general(value)  # the remembered minute gives the same answer again


# A canonical timestamp with one to three characters replaced, inserted or removed: a fast path that
# checks too little, or reads a shape the general parser refuses, gives a different answer here.
_mutation_chars = st.sampled_from("0123456789:-.,+TtZz WZ\u0661\u00b2_\n")


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = list(
        draw(
            st.sampled_from(["2026-01-01T06:01:00.598Z", "2026-01-01T06:01:00Z", "2024-02-29T23:59:59.999Z"])
        )
    )
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert" or not text:
            text.insert(where, draw(_mutation_chars))
        elif action == "replace":
            text[min(where, len(text) - 1)] = draw(_mutation_chars)
        else:
            del text[min(where, len(text) - 1)]
    return "".join(text)


@settings(max_examples=3000)
@given(mutated())
def test_fast_path_is_the_general_parser_on_mutated_timestamps(value: str) -> None:
    assert _fast(value) == _general(value)
