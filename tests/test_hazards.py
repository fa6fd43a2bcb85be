"""The hazard catalog: docs/hazards.md is generated from it, every code is raised by name,
and one condition has one code wherever it is found (issue 15)."""

from __future__ import annotations

import re

import pytest

from tlsa_manager import hazards
from tlsa_manager.hazards import CATALOG, Kind, Severity, kind_of, markdown

from conftest import REPO


def test_docs_page_is_the_catalog() -> None:
    page = (REPO / "docs" / "hazards.md").read_text()
    assert page == markdown(), "docs/hazards.md differs from tlsa_manager/hazards.py: run scripts/hazards-doc"


def test_codes_are_h1_to_hn_once_each_and_every_kind_is_listed() -> None:
    assert [k.code for k in CATALOG] == [f"H{n}" for n in range(1, len(CATALOG) + 1)]
    named = {id(v) for v in vars(hazards).values() if isinstance(v, Kind)}
    assert named == {id(k) for k in CATALOG}
    assert kind_of("H18") is hazards.SERVERS_DISAGREE


def test_a_retired_code_keeps_its_number_and_cannot_be_raised() -> None:
    retired = [k for k in CATALOG if k.retired]
    assert [k.code for k in retired] == ["H22"]
    assert "H22" in markdown() and "| H22 |" not in markdown()
    with pytest.raises(ValueError, match="H22 is retired"):
        hazards.NEXT_KEY_UNSTAGED.hazard("x", "y")


def test_a_finding_takes_its_code_and_usual_severity_from_the_catalog() -> None:
    h = hazards.SERVERS_DISAGREE.hazard("servers disagree", "fix transfers", "mx.example")
    assert (h.code, h.severity, h.owner) == ("H18", Severity.RISK, "mx.example")
    assert hazards.SERVERS_DISAGREE.hazard("m", "f", severity=Severity.FATAL).severity is Severity.FATAL


def test_no_module_spells_a_code() -> None:
    """Every raise site names its kind: a code written as a string literal could drift."""
    spelled = []
    for path in [*(REPO / "tlsa_manager").rglob("*.py"), *(REPO / "providers").rglob("*.py")]:
        if path.name == "hazards.py":
            continue
        text = path.read_text()
        spelled += [f"{path.name}: {m}" for m in re.findall(r"""["']H\d+["']|\bHazard\(""", text)]
    assert spelled == []
