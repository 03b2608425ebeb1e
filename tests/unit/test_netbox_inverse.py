"""The pure parts of NetBox undo on real recorded NetBox 4.6.8 and 4.7.3 objects: lookups, ownership, old values."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from libcluster.errors import is_answer_lost
from libcluster.netbox import NetBoxAnswerLost, NetBoxUnavailable
from libcluster.netbox.http import translated
from libcluster.netbox.inverse import (
    CLOCK_SLACK,
    allocated_undo,
    created_undo,
    plain,
    split_ours,
    updated_undo,
)


@pytest.fixture(params=("v4.6.8", "v4.7.3"))
def recorded(request: pytest.FixtureRequest, recorded_dir: Path) -> Any:
    """Load the first object of one recorded list of each NetBox version."""
    def load(name: str) -> dict[str, Any]:
        return dict(json.loads((recorded_dir / "netbox" / str(request.param) / name).read_text())["results"][0])

    return load


def _time(obj: dict[str, Any]) -> float:
    return datetime.fromisoformat(obj["created"].replace("Z", "+00:00")).timestamp()


def test_plain_gives_nested_objects_as_ids_and_choices_as_values(recorded: Any) -> None:
    vm = recorded("virtual-machines_by_name.json")
    assert plain(vm["cluster"]) == vm["cluster"]["id"] and plain(vm["status"]) == vm["status"]["value"]
    assert plain(vm["name"]) == vm["name"]


def test_an_update_keeps_the_old_value_of_each_field_sent(recorded: Any) -> None:
    vm = recorded("virtual-machines_by_name.json")
    undo = updated_undo("vm", vm, {"id": vm["id"], "memory": vm["memory"] * 2, "status": "planned"}, "name")
    assert (undo.action, undo.target) == ("vm-restore", vm["name"])
    assert undo.args["old"] == {"memory": vm["memory"], "status": vm["status"]["value"]}
    assert undo.args["new"] == {"memory": vm["memory"] * 2, "status": "planned"}
    json.dumps(dict(undo.args))


def test_a_created_address_is_ours_only_with_its_dns_name_and_made_since_the_write(recorded: Any) -> None:
    ip = recorded("ip-addresses_by_dns_name.json")
    undo = created_undo("ip-address", ip["address"], {"address": ip["address"], "dns_name": ip["dns_name"]})
    assert undo.args["find"] == {"address": ip["address"]} and undo.args["check"] == {"dns_name": ip["dns_name"]}
    made = _time(ip)
    assert split_ours([ip], {**undo.args, "since": made}) == ([ip], [])
    assert split_ours([ip], {**undo.args, "since": made + CLOCK_SLACK - 1}) == ([ip], [])
    ours, others = split_ours([ip], {**undo.args, "since": made + CLOCK_SLACK + 1})
    assert ours == [] and others == [f"#{ip['id']} (created {ip['created']}, before this write)"]
    ours, others = split_ours([ip], {**undo.args, "since": made, "check": {"dns_name": "mine.lab.example"}})
    assert ours == [] and others == [f"#{ip['id']} (dns_name={ip['dns_name']!r})"]


def test_an_allocation_is_found_by_dns_name_in_its_prefix_and_a_vm_by_name_checked_on_cluster() -> None:
    undo = allocated_undo("vm1.lab.example in 198.18.16.0/24", "198.18.16.0/24", {"dns_name": "vm1.lab.example"})
    assert undo.args["find"] == {"dns_name": "vm1.lab.example", "parent": "198.18.16.0/24"}
    vm = created_undo("vm", "vm1.lab.example", {"name": "vm1.lab.example", "cluster": {"id": 4}, "status": "active"})
    assert vm.args["find"] == {"name": "vm1.lab.example"} and vm.args["check"] == {"cluster": 4}


def test_only_a_write_whose_answer_was_lost_is_maybe() -> None:
    with pytest.raises(NetBoxAnswerLost) as lost, translated("POST ipam/ip-addresses"):
        raise requests.ReadTimeout("read timed out")
    assert is_answer_lost(lost.value)
    with pytest.raises(NetBoxUnavailable) as read, translated("GET ipam/ip-addresses"):
        raise requests.ReadTimeout("read timed out")
    assert not is_answer_lost(read.value)
    with pytest.raises(NetBoxUnavailable) as refused, translated("POST ipam/ip-addresses"):
        raise requests.exceptions.ConnectTimeout("connect timed out")
    assert not is_answer_lost(refused.value)
