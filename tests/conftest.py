"""Shared test fixtures: the lab (brought up once per session) and the recorded responses folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.labmode import BRINGS_UP

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
"""Real responses recorded from NetBox and Ganeti (tests/fixtures/recorded, see its README)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/lab/ as a lab test."""
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def recorded_dir() -> Path:
    """Folder of recorded real responses (tests/fixtures/recorded)."""
    return RECORDED


@pytest.fixture(scope="session")
def lab() -> dict[str, Any]:
    """Bring the lab up once (idempotent) and return `cookbook-lab status --json` as a dict.

    COOKBOOK_LAB=fresh (`./dev test` of the whole suite, CI): take down whatever lab is there first, so
    the run starts from a new Ganeti cluster, not from the state an earlier (killed) run left; then as
    require. COOKBOOK_LAB=require (`./dev test ARGS`): bring it up; any part down is a failure.
    COOKBOOK_LAB=running (development): use whatever is running, never call up; tests
    that need a part that is down are skipped by `lab_part`. Without root: skipped.
    """
    mode = os.environ.get("COOKBOOK_LAB", "")
    if os.geteuid() != 0:
        if mode in BRINGS_UP:
            pytest.fail(f"lab tests need root (COOKBOOK_LAB={mode})")
        pytest.skip("lab tests need root")
    from cookbook_lab import cli, configfile
    from cookbook_lab.common import Lab

    lab_ = Lab()
    if mode == "fresh":
        cli.down(lab_)
    if mode != "running":
        cli.up(lab_)
    state = cli.status(lab_)
    down = [name for name, part in state.items() if isinstance(part, dict) and part.get("up") is False]
    if down and mode != "running":
        pytest.fail(f"lab parts down after up: {', '.join(down)}")
    if not down:
        configfile.write(lab_, state)
    return state


@pytest.fixture
def lab_part(lab: dict[str, Any]) -> Any:
    """Return a function that gives one part's status dict, skipping the test if it is down (running mode)."""

    def get(name: str) -> dict[str, Any]:
        part = lab.get(name)
        if not isinstance(part, dict) or not part.get("up"):
            pytest.skip(f"lab part {name} is not up")
        return part

    return get


@pytest.fixture(scope="session")
def lab_config(lab: dict[str, Any]) -> Path:
    """Path of the generated `cookbook -c` configuration of the lab."""
    path = Path(lab["config"])
    if not path.exists():
        pytest.skip("lab config not written (a lab part is down)")
    return path
