"""The undo of NetBox writes against the lab's NetBox 4.7: journaled per object with its id, undone, idempotent.

Every object a test makes has a random suffix and is deleted at teardown (already gone is fine). Undo
steps are rebuilt from the journal and run on a fresh client, as `cookbook --recover` does.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import topology
from libcluster import undo as undo_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.netbox import NetBox, NetBoxAnswerLost
from libcluster.netbox.http import NetBoxAdapter
from libcluster.netbox.inverse import created_undo
from libcluster.writes import NotOursError
from tests.lab.undo_lab import Clients, Journaled, LosingAdapter

PREFIX4, PREFIX6 = topology.VM_PREFIXES["A"]
NAMES = ("undo", "upd", "lost", "theirs", "mine", "elsewhere")
"""First labels of the names the tests give VMs and addresses (followed by the test's tag)."""


@pytest.fixture
def nb_part(lab_part: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The lab's NetBox part (url, token, ro_token)."""
    return lab_part("netbox")


def _client(part: dict[str, Any], changes: ChangeLog | None = None) -> NetBox:
    section = Section({"url": part["url"], "token": part["token"], "ro_token": part["ro_token"], "timeout": 60,
                       "allow_insecure_http": part["url"].startswith("http://")}, "netbox", "lab")
    return NetBox(section, read_write=True, dry_run=False, changes=changes or ChangeLog(dry_run=False))


@pytest.fixture
def run(nb_part: dict[str, Any], tmp_path: Path) -> Journaled:
    """A journaled run whose undo steps run on a fresh NetBox client."""
    return Journaled(tmp_path, Clients(netbox=lambda: _client(nb_part)))


@pytest.fixture
def tag() -> str:
    """Random suffix of this test's names."""
    return secrets.token_hex(3)


@pytest.fixture
def cleanup(nb_part: dict[str, Any], tag: str) -> Iterator[None]:
    """Deletes every VM and address of this test's names (see NAMES) at the end."""
    yield
    nb = _client(nb_part)
    names = [f"{prefix}-{tag}.{topology.DOMAIN}" for prefix in NAMES]
    for kind, field in (("ip-address", "dns_name"), ("vm", "name")):
        left = nb.objects(kind, **{field: names})
        if left:
            nb.delete(kind, left)


def _cluster(nb: NetBox, name: str) -> dict[str, Any]:
    group = nb.get("cluster-group", slug=topology.CLUSTER)
    return nb.get("cluster", name=name, group_id=group["id"])


def _losing(nb: NetBox, lose: int = 1) -> LosingAdapter:
    adapter = LosingAdapter(NetBoxAdapter(timeout=60, verify=True, pool_size=1), lose=lose)
    nb.session.mount("http://", adapter)
    nb.session.mount("https://", adapter)
    return adapter


@pytest.mark.usefixtures("cleanup")
def test_creates_and_update_are_journaled_with_ids_and_undone_in_reverse(
        run: Journaled, nb_part: dict[str, Any], tag: str) -> None:
    nb = _client(nb_part, run.changes)
    cluster = _cluster(nb, "A")
    name = f"undo-{tag}.{topology.DOMAIN}"
    [vm] = nb.create("vm", [{"name": name, "cluster": cluster["id"], "status": "active", "memory": 1024}])
    [iface] = nb.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
    ip = nb.allocate_ip(PREFIX4, dns_name=name, interface_id=iface["id"])
    nb.update("vm", [{"id": vm["id"], "memory": 2048, "primary_ip4": ip["id"]}])

    intents, results = run.lines("intent"), run.lines("result")
    assert [line["action"] for line in intents] == ["vm-create", "vm-interface-create", "ip-address-allocate",
                                                    "vm-update"]
    assert [line["status"] for line in results] == ["done"] * 4
    assert [line["detail"]["id"] for line in results] == [vm["id"], iface["id"], ip["id"], vm["id"]]
    assert results[2]["detail"]["address"] == ip["address"]
    assert intents[3]["undo"]["args"]["old"] == {"memory": 1024, "primary_ip4": None}

    undos = run.from_journal()
    clients = Clients(netbox=lambda: _client(nb_part))
    assert [undo_module.run(undo, clients) for undo in reversed(undos)] == ["undone"] * 4
    assert nb.find("vm", id=vm["id"]) is None and nb.find("ip-address", id=ip["id"]) is None
    assert nb.find("vm-interface", id=iface["id"]) is None
    assert [undo_module.run(undo, clients) for undo in reversed(undos)] == ["absent"] * 4


@pytest.mark.usefixtures("cleanup")
def test_an_update_changed_since_is_not_patched_back(run: Journaled, nb_part: dict[str, Any], tag: str) -> None:
    other = _client(nb_part)
    [vm] = other.create("vm", [{"name": f"upd-{tag}.{topology.DOMAIN}", "cluster": _cluster(other, "A")["id"],
                                "status": "active", "memory": 1024}])
    _client(nb_part, run.changes).update("vm", [{"id": vm["id"], "memory": 2048}])
    other.update("vm", [{"id": vm["id"], "memory": 3072}])
    [undo] = run.from_journal()
    with pytest.raises(NotOursError, match="memory=3072"):
        other.undo(undo.action, undo.args)
    assert other.get("vm", id=vm["id"])["memory"] == 3072


@pytest.mark.usefixtures("cleanup")
def test_writes_whose_answer_was_lost_are_maybe_and_found_by_lookup(
        run: Journaled, nb_part: dict[str, Any], tag: str) -> None:
    nb = _client(nb_part, run.changes)
    name = f"lost-{tag}.{topology.DOMAIN}"
    losing = _losing(nb, lose=2)
    with pytest.raises(NetBoxAnswerLost):
        nb.create("vm", [{"name": name, "cluster": _cluster(nb, "A")["id"], "status": "active"}])
    with pytest.raises(NetBoxAnswerLost):
        nb.allocate_ip(nb.get("prefix", prefix=PREFIX6), dns_name=name)
    assert len(losing.lost) == 2
    assert [line["status"] for line in run.lines("result")] == ["maybe", "maybe"]
    reader = _client(nb_part)
    assert reader.count("vm", name=name) == 1 and reader.count("ip-address", dns_name=name) == 1
    assert run.stack.rollback() == []
    assert [line["status"] for line in run.lines("undo")] == ["undone", "undone"]
    assert reader.count("vm", name=name) == 0 and reader.count("ip-address", dns_name=name) == 0
    for undo in run.from_journal():
        assert reader.undo(undo.action, undo.args) == "absent"


@pytest.mark.usefixtures("cleanup")
def test_objects_a_lookup_finds_that_are_not_ours_are_left_alone(nb_part: dict[str, Any], tag: str) -> None:
    nb = _client(nb_part)
    theirs = nb.allocate_ip(PREFIX4, dns_name=f"theirs-{tag}.{topology.DOMAIN}")
    mine = created_undo("ip-address", theirs["address"], {"address": theirs["address"],
                                                          "dns_name": f"mine-{tag}.{topology.DOMAIN}"})
    with pytest.raises(NotOursError, match=f"dns_name='theirs-{tag}"):
        nb.undo(mine.action, mine.args)
    assert nb.find("ip-address", id=theirs["id"]) is not None
    name = f"elsewhere-{tag}.{topology.DOMAIN}"
    [vm_b] = nb.create("vm", [{"name": name, "cluster": _cluster(nb, "B")["id"], "status": "active"}])
    lost_in_a = created_undo("vm", name, {"name": name, "cluster": _cluster(nb, "A")["id"]})
    with pytest.raises(NotOursError, match=f"#{vm_b['id']}"):
        nb.undo(lost_in_a.action, lost_in_a.args)
    assert nb.find("vm", id=vm_b["id"]) is not None
