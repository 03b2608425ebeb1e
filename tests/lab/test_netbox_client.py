"""The NetBox client against the lab's real NetBox 4.7: allocation, VM lifecycle, bulk calls, tokens, dry-run.

Every object a test makes has a random suffix and is deleted at teardown, even on failure;
the seeded site, clusters, prefixes and devices are only read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from cookbook_lab import topology
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.netbox import (
    NetBox,
    NetBoxAuthError,
    NetBoxError,
    NetBoxFilterError,
    NetBoxReadOnly,
    NetBoxValidationError,
)
from libcluster.netbox.kinds import KINDS

PREFIX4, PREFIX6 = topology.VM_PREFIXES["A"]


@pytest.fixture
def nb_part(lab_part: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The lab's NetBox part (url, token, ro_token)."""
    return lab_part("netbox")


def config(part: dict[str, Any], **extra: Any) -> Section:
    """The `netbox` section for the lab NetBox."""
    return Section({"url": part["url"], "token": part["token"], "ro_token": part["ro_token"], "timeout": 60,
                    "allow_insecure_http": part["url"].startswith("http://"), **extra}, "netbox", "lab")


def client(part: dict[str, Any], *, read_write: bool = True, dry_run: bool = False, changes: ChangeLog | None = None,
           **extra: Any) -> NetBox:
    """A client of the lab NetBox recording into changes (a fresh ChangeLog when not given)."""
    return NetBox(config(part, **extra), read_write=read_write, dry_run=dry_run,
                  changes=changes if changes is not None else ChangeLog(dry_run=dry_run))


@pytest.fixture
def tag() -> str:
    """Random suffix of this test's names."""
    return secrets.token_hex(3)


@pytest.fixture
def created(nb_part: dict[str, Any]) -> Iterator[list[tuple[str, int]]]:
    """(kind, id) of objects the test makes; deleted at teardown in reverse order (already gone is fine)."""
    objects: list[tuple[str, int]] = []
    yield objects
    cleaner = client(nb_part)
    for kind in dict.fromkeys(kind for kind, _ in reversed(objects)):
        left = cleaner.objects(kind, id=[object_id for other, object_id in objects if other == kind])
        if left:
            cleaner.delete(kind, left)


@pytest.fixture
def cluster(nb_part: dict[str, Any]) -> dict[str, Any]:
    """The seeded NetBox cluster of node group A."""
    reader = client(nb_part, read_write=False)
    group = reader.get("cluster-group", slug=topology.CLUSTER)
    return reader.get("cluster", name="A", group_id=group["id"])


def test_every_filter_the_client_allows_exists_in_the_servers_openapi(nb_part: dict[str, Any]) -> None:
    schema = requests.get(f"{nb_part['url']}/api/schema/", params={"format": "json"}, timeout=300,
                          headers={"Authorization": f"Bearer {nb_part['ro_token']}"}).json()
    for kind in KINDS.values():
        parameters = {parameter["name"] for parameter in schema["paths"][f"/api/{kind.path}/"]["get"]["parameters"]}
        assert set(kind.allowed()) <= parameters, f"{kind.name}: {set(kind.allowed()) - parameters}"
        assert "fields" in parameters


def test_next_free_ip_allocate_with_dns_name_and_release(nb_part: dict[str, Any], created: list[tuple[str, int]],
                                                         tag: str) -> None:
    changes = ChangeLog(dry_run=False)
    nb = client(nb_part, changes=changes)
    prefix = nb.get("prefix", prefix=PREFIX4)
    used_before = nb.count("ip-address", parent=PREFIX4)
    free = nb.available_ips(prefix, 3)
    assert len(free) == 3 and all(address.endswith("/24") for address in free)
    ip = nb.allocate_ip(prefix, dns_name=f"alloc-{tag}.{topology.DOMAIN}", description="lab test")
    created.append(("ip-address", ip["id"]))
    assert ip["address"] in free
    assert ip["dns_name"] == f"alloc-{tag}.{topology.DOMAIN}"
    assert nb.count("ip-address", parent=PREFIX4) == used_before + 1
    assert ip["address"] not in nb.available_ips(prefix, 3)
    nb.release_ips([ip])
    assert nb.find("ip-address", id=ip["id"]) is None
    assert nb.count("ip-address", parent=PREFIX4) == used_before
    dns_name = f"alloc-{tag}.{topology.DOMAIN}"
    assert [(entry.action, entry.target) for entry in changes.changes] == [
        ("ip-address-allocate", f"{dns_name} in {PREFIX4}"), ("ip-address-release", ip["address"])]
    assert changes.changes[0].detail["address"] == ip["address"] and changes.changes[0].detail["id"] == ip["id"]


def test_vm_with_interface_mac_and_primary_ips(nb_part: dict[str, Any], created: list[tuple[str, int]],
                                              cluster: dict[str, Any], tag: str) -> None:
    nb = client(nb_part)
    name = f"vm-{tag}.{topology.DOMAIN}"
    [vm] = nb.create("vm", [{"name": name, "cluster": cluster["id"], "status": "active", "vcpus": 2,
                             "memory": 2048, "disk": 10240}])
    created.append(("vm", vm["id"]))
    [iface] = nb.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
    nb.set_macs({iface["id"]: "aa:00:00:12:34:56"})
    ip4 = nb.allocate_ip(PREFIX4, dns_name=name, interface_id=iface["id"])
    ip6 = nb.allocate_ip(PREFIX6, dns_name=name, interface_id=iface["id"])
    created.extend([("ip-address", ip4["id"]), ("ip-address", ip6["id"])])
    nb.update("vm", [{"id": vm["id"], "primary_ip4": ip4["id"], "primary_ip6": ip6["id"], "memory": 4096}])

    read = nb.get("vm", name=name, cluster_id=cluster["id"])
    assert (read["primary_ip4"]["id"], read["primary_ip6"]["id"], read["memory"]) == (ip4["id"], ip6["id"], 4096)
    [read_iface] = nb.objects("vm-interface", virtual_machine_id=vm["id"])
    assert read_iface["mac_address"].lower() == "aa:00:00:12:34:56"
    nb.set_macs({iface["id"]: "aa:00:00:65:43:21"})
    assert nb.get("vm-interface", id=iface["id"])["mac_address"].lower() == "aa:00:00:65:43:21"
    assert [mac["mac_address"].lower() for mac in nb.objects("mac-address", vminterface_id=iface["id"])] == [
        "aa:00:00:65:43:21"]
    ips = nb.objects("ip-address", virtual_machine_id=vm["id"], vminterface_id=iface["id"])
    assert sorted(ip["id"] for ip in ips) == sorted([ip4["id"], ip6["id"]])

    nb.delete("vm", [read])
    assert nb.find("vm", id=vm["id"]) is None
    assert nb.objects("vm-interface", id=iface["id"]) == []
    assert nb.objects("ip-address", id=[ip4["id"], ip6["id"]]) == []


def test_graphql_list_reads_by_pages_and_refuses_an_unknown_filter(nb_part: dict[str, Any],
                                                                    created: list[tuple[str, int]],
                                                                    cluster: dict[str, Any], tag: str) -> None:
    nb = client(nb_part)
    [vm] = nb.create("vm", [{"name": f"gql-{tag}.{topology.DOMAIN}", "cluster": cluster["id"], "status": "active"}])
    created.append(("vm", vm["id"]))
    made = nb.create("vm-interface", [{"virtual_machine": vm["id"], "name": f"eth{n}",
                                       "mac_address": f"aa:00:00:00:{n:02x}:01"} for n in range(3)])
    reader = client(nb_part, read_write=False, page_size=2)
    before = reader.request_count
    rows = reader.graphql_list("vm_interface_list", "id name primary_mac_address { mac_address }",
                               filters="{virtual_machine: {id: {exact: $vm}}}", variables={"vm": ("ID!", vm["id"])})
    assert reader.request_count - before == 3  # 2 + 1 + the empty page
    assert sorted((int(row["id"]), row["name"], row["primary_mac_address"]["mac_address"].lower()) for row in rows) == \
        [(iface["id"], f"eth{n}", f"aa:00:00:00:{n:02x}:01") for n, iface in enumerate(made)]
    with pytest.raises(NetBoxError, match="unknown field 'virtual_machin'"):
        reader.graphql_list("vm_interface_list", "id", filters="{virtual_machin: {id: {exact: $vm}}}",
                            variables={"vm": ("ID!", vm["id"])})


def test_bulk_create_read_by_pages_update_and_delete(nb_part: dict[str, Any], created: list[tuple[str, int]],
                                                     cluster: dict[str, Any], tag: str) -> None:
    nb = client(nb_part, bulk_size=10, page_size=7, threads=1)
    names = [f"bulk{index}-{tag}.{topology.DOMAIN}" for index in range(25)]
    start = nb.request_count
    vms = nb.create("vm", [{"name": name, "cluster": cluster["id"], "status": "planned", "memory": 1024}
                           for name in names])
    created.extend(("vm", vm["id"]) for vm in vms)
    assert nb.request_count - start == 3
    start = nb.request_count
    read = nb.objects("vm", name=names, cluster_id=cluster["id"], fields=["memory", "status"])
    assert sorted(vm["name"] for vm in read) == sorted(names)
    assert nb.request_count - start == 4  # 25 objects, 7 per page
    nb.update("vm", [{"id": vm["id"], "memory": 2048, "status": "active"} for vm in vms])
    assert {(vm["memory"], vm["status"]["value"]) for vm in nb.objects("vm", id=[vm["id"] for vm in vms])} == {
        (2048, "active")}
    start = nb.request_count
    nb.delete("vm", vms)
    assert nb.request_count - start == 3
    assert nb.count("vm", name=names) == 0


def test_read_only_token_and_bad_token_are_refused_clearly(nb_part: dict[str, Any], cluster: dict[str, Any],
                                                           tag: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name = f"refused-{tag}.{topology.DOMAIN}"
    # A read-write client given the read-only token: NetBox itself refuses the write.
    ro_as_rw = NetBox(config(nb_part, token=nb_part["ro_token"]), read_write=True, dry_run=False,
                      changes=ChangeLog(dry_run=False))
    with pytest.raises(NetBoxAuthError, match="HTTP 403") as caught:
        ro_as_rw.create("vm", [{"name": name, "cluster": cluster["id"]}])
    # A client opened read-only refuses before sending anything.
    read_only = client(nb_part, read_write=False)
    start = read_only.request_count
    with pytest.raises(NetBoxReadOnly):
        read_only.create("vm", [{"name": name, "cluster": cluster["id"]}])
    assert read_only.request_count == start
    bad = "nbt_0123456789ab.0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(NetBoxAuthError) as caught_bad:
        NetBox(config(nb_part, ro_token=bad), read_write=False, dry_run=False,
               changes=ChangeLog(dry_run=False)).objects("vm", name=name)
    for token in (nb_part["token"], nb_part["ro_token"], bad):
        assert token not in str(caught.value) and token not in str(caught_bad.value) and token not in caplog.text
    assert client(nb_part, read_write=False).find("vm", name=name) is None


def test_validation_and_filter_errors_are_typed(nb_part: dict[str, Any], created: list[tuple[str, int]],
                                                cluster: dict[str, Any], tag: str) -> None:
    nb = client(nb_part)
    with pytest.raises(NetBoxValidationError, match="running is not a valid choice"):
        created.extend(("vm", vm["id"]) for vm in nb.create(
            "vm", [{"name": f"invalid-{tag}.{topology.DOMAIN}", "cluster": cluster["id"], "status": "running"}]))
    with pytest.raises(NetBoxFilterError, match="unknown filter"):
        nb.objects("vm", cluster_idd=cluster["id"])
    with pytest.raises(NetBoxError, match="unknown NetBox object kind"):
        nb.objects("virtual-machine")


def test_dry_run_changes_nothing(nb_part: dict[str, Any], created: list[tuple[str, int]], cluster: dict[str, Any],
                                 tag: str) -> None:
    writer = client(nb_part)
    [real_vm] = writer.create("vm", [{"name": f"dry-real-{tag}.{topology.DOMAIN}", "cluster": cluster["id"]}])
    created.append(("vm", real_vm["id"]))
    [iface] = writer.create("vm-interface", [{"virtual_machine": real_vm["id"], "name": "eth0"}])
    writer.set_macs({iface["id"]: "aa:00:00:00:00:01"})
    reader = client(nb_part, read_write=False)
    prefix = reader.get("prefix", prefix=PREFIX4)

    def state() -> tuple[int, int, int, str]:
        return (reader.count("object-change"), reader.count("ip-address", parent=PREFIX4),
                reader.count("vm", cluster_id=cluster["id"]), reader.get("vm-interface", id=iface["id"])["mac_address"])

    before = state()
    changes = ChangeLog(dry_run=True)
    nb = client(nb_part, dry_run=True, changes=changes)
    [vm] = nb.create("vm", [{"name": f"dry-{tag}.{topology.DOMAIN}", "cluster": cluster["id"], "status": "active"}])
    nb.update("vm", [{"id": real_vm["id"], "comments": f"dry-run {tag}"}])
    free = reader.available_ips(prefix, 2)
    [ip] = nb.allocate_ips(prefix, [{"dns_name": f"dry-{tag}.{topology.DOMAIN}"}])
    nb.set_macs({iface["id"]: "aa:00:00:00:00:02"})
    nb.release_ips(reader.objects("ip-address", parent=PREFIX4)[:1])
    nb.delete("vm", [real_vm])
    assert state() == before
    assert vm["id"] is None and ip["address"] == free[0]
    actions = [entry.action for entry in changes.changes]
    assert actions[:5] == ["vm-create", "vm-update", "ip-address-allocate", "vm-interface-update",
                           "mac-address-delete"]
    assert actions[-1] == "vm-delete"
    assert all(entry.dry_run for entry in changes.changes)
