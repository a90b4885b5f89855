"""The one home of "did you mean": closest_name, did_you_mean, name_list."""

from __future__ import annotations

from hipsml._suggest import closest_name, did_you_mean, name_list


def test_closest_name_order_of_preference() -> None:
    assert closest_name("ra", ["rab", "RA"]) == "RA"  # another case beats a close spelling
    assert closest_name("widht", ["width", "height"]) == "width"
    assert closest_name("RAJ2000X", ["raj2000", "dej2000"]) == "raj2000"  # spelling, ignoring case
    assert closest_name("RA", ["ID", "RA_ICRS", "RAJ2000"]) == "RA_ICRS"  # the first prefix match
    assert closest_name("", ["a"]) is None and closest_name("zzz", ["width"]) is None and closest_name("x", []) is None


def test_did_you_mean_and_the_fallback() -> None:
    assert did_you_mean("numrots", ["numrot", "width"]) == "; did you mean 'numrot'?"
    assert did_you_mean("zzz", ["a", "b"]) == ""
    assert did_you_mean("zzz", ["a", "b"], otherwise="; choose one of {names}") == "; choose one of a, b"


def test_name_list_abbreviates() -> None:
    assert name_list([]) == "" and name_list(["a", 2]) == "a, 2"
    assert name_list(list("abcd"), limit=4) == "a, b, c, d"
    assert name_list(list("abcde"), limit=4) == "a, b, c, d, ... (5 in all)"
