"""The -t/--task-id convention: every cookbook of sre.ganeti and sre.dns that changes something (all but the
read-only resource-report) offers it, so the task id reaches the audit record, the SAL and the NetBox change log."""

from __future__ import annotations

from pathlib import Path

import pytest

from libcluster.cookbook import CookbookBase
from libcluster.testing import load_cookbook

TREE = Path(__file__).resolve().parents[2]
READ_ONLY = {"sre.ganeti.resource-report"}
"""Cookbooks that change nothing: no task id."""
NAMES = sorted(f"sre.{path.parent.name}.{path.stem}" for group in ("ganeti", "dns")
               for path in (TREE / "cookbooks" / "sre" / group).glob("*.py") if not path.stem.startswith("_"))


@pytest.mark.parametrize("name", [name for name in NAMES if name not in READ_ONLY])
def test_every_cookbook_that_changes_something_takes_a_task_id(name: str) -> None:
    module = load_cookbook(TREE, name)
    [cookbook] = [value for value in vars(module).values() if isinstance(value, type)
                  and issubclass(value, CookbookBase) and value.__module__ == module.__name__]
    assert cookbook.argument_task_required is not None, f"{name} has no -t/--task-id"


def test_the_list_holds_the_cookbooks_of_issue_14() -> None:
    assert {"sre.ganeti.decommission-vm", "sre.ganeti.reboot-vm", "sre.dns.netbox", "sre.ganeti.makevm"} <= set(NAMES)
