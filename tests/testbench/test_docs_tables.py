"""docs/profiles-and-quirks.md shows the profiles, the rules' actions and the quirks as
the code has them (tests/docs_tables.py generates the tables)."""

from __future__ import annotations

import pytest

from tests.docs_tables import DOC, profile_fields, quirks, render, rule_actions


def test_the_page_matches_the_code() -> None:
    text = DOC.read_text()
    assert render(text) == text, "run: python -m tests.docs_tables"


def test_the_tables_say_what_the_profiles_do() -> None:
    fields = profile_fields().splitlines()
    assert fields[0] == ("| field | `strict` | `linux` | `qemu` | `firecracker` | "
                         "`firecracker-legacy` |")
    assert "| `seed` | recompute | adjust | recompute | adjust | adjust |" in fields
    assert "| `rx_oversize_retry_ns` | 0 | 0 | 0 | 0 | 1000 |" in fields
    assert fields[-4:] == ["| rules: reject | 13 | 15 | 6 | 15 | 15 |",
                           "| rules: drop | 28 | 10 | 22 | 10 | 10 |",
                           "| rules: fix | 1 | 5 | 4 | 5 | 5 |",
                           "| rules: allow | 11 | 23 | 21 | 23 | 23 |"]
    rules = rule_actions().splitlines()
    assert len(rules) == 2 + 53
    assert "| `gso-size-zero` | gso_type set with gso_size 0 | yes | reject | reject | drop | " \
        "reject | reject |" in rules
    assert sum(line.startswith("| `") for line in quirks().splitlines()) == 31


def test_a_missing_block_is_named() -> None:
    with pytest.raises(ValueError, match="no generated block 'profile-fields'"):
        render("no tables here\n")
