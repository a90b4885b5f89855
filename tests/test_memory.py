"""The one memory-budget check (hipsml/_memory.py): parse, budget precedence, refusal message."""

from __future__ import annotations

import pytest

from hipsml._memory import (
    ENV_VAR,
    check_memory,
    memory_budget,
    parse_bytes,
    physical_memory,
)
from hipsml.errors import HipsmlError, InvalidInputError, ResourceLimitError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GiB", 8 * 2**30), ("8 gib", 8 * 2**30), ("512MB", 512 * 10**6), ("1e9", 10**9), ("2k", 2048), (4096, 4096)],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "eight", "8 GiBs", "-1GiB", "0", "nan", "inf", True])
def test_parse_bytes_refuses_nonsense(text):
    with pytest.raises(InvalidInputError, match=ENV_VAR):
        parse_bytes(text)


def test_budget_precedence(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert memory_budget() == physical_memory() // 2
    monkeypatch.setenv(ENV_VAR, "3GiB")
    assert memory_budget() == 3 * 2**30
    assert memory_budget("1MiB") == 2**20  # the argument beats the environment


def test_bad_environment_budget_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(InvalidInputError, match=f"{ENV_VAR} must be a size.*'lots'"):
        memory_budget()


def test_check_memory_refuses_with_both_figures():
    assert check_memory(2**30, what="a job", budget="1GiB") == 2**30  # equal is allowed
    with pytest.raises(ResourceLimitError) as info:
        check_memory(2**40 * 4.0, what="a 2^40-float array", shrink="neuron_dim", budget="2GiB")
    message = str(info.value)
    assert "\n" not in message
    assert "a 2^40-float array needs about 4.0 TiB" in message
    assert "memory budget of 2.0 GiB" in message
    assert "make neuron_dim smaller" in message
    assert isinstance(info.value, HipsmlError) and isinstance(info.value, MemoryError)


def test_check_memory_refuses_nan_estimate():
    with pytest.raises(ResourceLimitError):
        check_memory(float("nan"), what="a job", budget="1GiB")
