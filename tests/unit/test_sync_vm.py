"""libcluster.sync.vm: the NetBox record of one Ganeti instance, from recorded RAPI and NetBox bodies.

The pure parts are checked on the recorded bodies (Ganeti 3.0.2 transcript, NetBox 4.6.8 and 4.7.3);
record_instance() runs through the real NetBox client against a small stateful NetBox made of those
bodies, to check that it writes what differs, nothing on a second call, and nothing in dry-run.
"""

# ruff: noqa: F401, F811 - the NetBox fixtures of test_netbox_client are imported and used as arguments

from __future__ import annotations

import copy
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_netbox_client import FakeNetBox, fake, make_client, meta, recorded, version

from libcluster.changes import ChangeLog
from libcluster.sync import vm as sync_vm


@pytest.fixture(scope="module")
def instances(recorded_dir: Path) -> dict[str, dict[str, Any]]:
    """The last recorded `GET /2/instances/NAME` answer of each instance of the transcript."""
    found: dict[str, dict[str, Any]] = {}
    for line in (recorded_dir / "ganeti" / "rapi-transcript-3.0.2.jsonl").read_text().splitlines():
        entry = json.loads(line)
        answer = entry.get("response")
        if entry.get("method") == "GET" and isinstance(answer, dict) and "nic.macs" in answer:
            found[answer["name"]] = answer
    return found


def test_vm_fields_from_a_recorded_instance(instances: dict[str, dict[str, Any]]) -> None:
    inst2 = instances["inst2.gl.test"]
    assert sync_vm.vm_fields(inst2, 4) == {"name": "inst2.gl.test", "cluster": 4, "status": "active", "vcpus": 1,
                                           "memory": inst2["beparams"]["maxmem"], "disk": sum(inst2["disk.sizes"])}
    assert sync_vm.vm_status(instances["inst3.gl.test"]) == "offline"


def test_nics_are_named_ethn_unless_ganeti_names_them(instances: dict[str, dict[str, Any]]) -> None:
    inst1 = instances["inst1.gl.test"]
    assert sync_vm.nics(inst1) == [sync_vm.Nic("eth0", inst1["nic.macs"][0])]
    named = {**inst1, "nic.macs": ["aa:00:00:00:00:01", "aa:00:00:00:00:02"], "nic.names": ["front", None]}
    assert [nic.name for nic in sync_vm.nics(named)] == ["front", "eth1"]


def test_changed_fields_compare_nested_objects_choices_and_decimals(recorded: Callable[[str], Any]) -> None:
    vm = recorded("virtual-machines_by_name.json")["results"][0]
    same = {"name": vm["name"], "cluster": vm["cluster"]["id"], "status": "active", "vcpus": int(vm["vcpus"]),
            "memory": vm["memory"], "disk": vm["disk"]}
    assert sync_vm.changed_fields(vm, same) == {}
    assert sync_vm.changed_fields(vm, {**same, "memory": vm["memory"] * 2, "status": "offline"}) == {
        "memory": vm["memory"] * 2, "status": "offline"}


def test_interface_mac_reads_both_netbox_shapes(recorded: Callable[[str], Any]) -> None:
    iface = recorded("vm-interfaces_by_virtual_machine_id.json")["results"][0]
    assert sync_vm.interface_mac(iface) is None
    assert sync_vm.interface_mac({**iface, "mac_address": "AA:00:00:00:00:01"}) == "AA:00:00:00:00:01"
    shape_46 = {**iface, "primary_mac_address": {"id": 3, "mac_address": "aa:00:00:00:00:02"}}
    assert sync_vm.interface_mac(shape_46) == "aa:00:00:00:00:02"


def test_ip_and_primary_changes_against_recorded_objects(recorded: Callable[[str], Any],
                                                         meta: dict[str, Any]) -> None:
    ip = recorded("ip-addresses_by_virtual_machine_id.json")["results"][0]
    vm = recorded("virtual-machines_by_name.json")["results"][0]
    ids = meta["ids"]
    assert sync_vm.changed_fields(ip, sync_vm.ip_fields(ids["iface"], ids["vm_name"])) == {}
    assert sync_vm.changed_fields(ip, sync_vm.ip_fields(ids["iface"] + 1, ids["vm_name"])) == {
        "assigned_object_id": ids["iface"] + 1}
    v6 = {"id": 99, "address": "2001:db8::5/64"}
    assert sync_vm.primary_fields(vm, [ip]) == {}
    assert sync_vm.primary_fields(vm, [ip, v6]) == {"primary_ip6": 99}


class StatefulNetBox:
    """VMs, interfaces, MAC objects and IPs kept in memory, shaped like the recorded bodies, on a FakeNetBox."""

    def __init__(self, server: FakeNetBox, recorded: Callable[[str], Any]) -> None:
        """Serve the endpoints record_instance() uses, starting from the recorded IP as the only object."""
        self.templates = {
            "vm": recorded("virtual-machines_by_name.json")["results"][0],
            "iface": recorded("vm-interfaces_by_virtual_machine_id.json")["results"][0],
        }
        self.ids = itertools.count(1000)
        self.vms: dict[int, dict[str, Any]] = {}
        self.ifaces: dict[int, dict[str, Any]] = {}
        self.macs: dict[int, dict[str, Any]] = {}
        ip = recorded("ip-addresses_by_virtual_machine_id.json")["results"][0]
        self.ips = {ip["id"]: {**ip, "assigned_object_type": None, "assigned_object_id": None}}
        routes = {
            ("GET", "virtualization/virtual-machines/"): lambda query, sent: self.listing(self.vms, query),
            ("POST", "virtualization/virtual-machines/"): lambda query, sent: self.create_vms(sent),
            ("PATCH", "virtualization/virtual-machines/"): lambda query, sent: self.patch(self.vms, sent),
            ("GET", "virtualization/interfaces/"): lambda query, sent: self.listing(self.ifaces, query),
            ("POST", "virtualization/interfaces/"): lambda query, sent: self.create_ifaces(sent),
            ("PATCH", "virtualization/interfaces/"): lambda query, sent: self.patch(self.ifaces, sent),
            ("POST", "dcim/mac-addresses/"): lambda query, sent: self.create_macs(sent),
            ("GET", "dcim/mac-addresses/"): lambda query, sent: self.listing(self.macs, query),
            ("DELETE", "dcim/mac-addresses/"): lambda query, sent: self.delete(self.macs, sent),
            ("GET", "ipam/ip-addresses/"): lambda query, sent: self.listing(self.ips, query),
            ("PATCH", "ipam/ip-addresses/"): lambda query, sent: self.patch(self.ips, sent),
        }
        for (method, path), handler in routes.items():
            server.route(method, path, lambda _m, query, sent, handler=handler: handler(query, sent))

    @staticmethod
    def listing(store: dict[int, dict[str, Any]], query: dict[str, list[str]]) -> tuple[int, Any]:
        def value(obj: dict[str, Any], name: str) -> str:
            if name == "vminterface_id":
                return str(obj.get("assigned_object_id"))
            nested = {"cluster_id": "cluster", "virtual_machine_id": "virtual_machine"}.get(name)
            return str((obj.get(nested) or {}).get("id")) if nested else str(obj.get(name))

        filters = {name: values for name, values in query.items() if name not in ("limit", "offset", "fields")}
        found = [obj for obj in store.values() if all(value(obj, name) in wanted for name, wanted in filters.items())]
        return 200, {"count": len(found), "next": None, "previous": None, "results": copy.deepcopy(found)}

    def shaped(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Fields as NetBox answers them: related objects nested, choices as value/label."""
        out = dict(fields)
        for name in ("cluster", "virtual_machine"):
            if isinstance(out.get(name), int):
                out[name] = {"id": out[name]}
        if isinstance(out.get("status"), str):
            out["status"] = {"value": out["status"], "label": out["status"].title()}
        for name in ("primary_ip4", "primary_ip6"):
            if isinstance(out.get(name), int):
                out[name] = {"id": out[name], "address": self.ips[out[name]]["address"]}
        if isinstance(out.get("primary_mac_address"), int):
            mac = self.macs[out["primary_mac_address"]]
            out["primary_mac_address"] = {"id": mac["id"], "mac_address": mac["mac_address"]}
            out["mac_address"] = mac["mac_address"]
        return out

    def create_vms(self, sent: list[dict[str, Any]]) -> tuple[int, Any]:
        made = []
        for fields in sent:
            vm = {**self.templates["vm"], "primary_ip": None, "primary_ip4": None, "primary_ip6": None,
                  **self.shaped(fields), "id": next(self.ids)}
            self.vms[vm["id"]] = vm
            made.append(copy.deepcopy(vm))
        return 201, made

    def create_ifaces(self, sent: list[dict[str, Any]]) -> tuple[int, Any]:
        made = []
        for fields in sent:
            iface = {**self.templates["iface"], **self.shaped(fields), "id": next(self.ids)}
            self.ifaces[iface["id"]] = iface
            if "mac_address" in fields:
                self.create_macs([{"mac_address": fields["mac_address"], "assigned_object_type":
                                   "virtualization.vminterface", "assigned_object_id": iface["id"]}])
            made.append(copy.deepcopy(iface))
        return 201, made

    def create_macs(self, sent: list[dict[str, Any]]) -> tuple[int, Any]:
        made = []
        for fields in sent:
            mac = {**fields, "id": next(self.ids)}
            self.macs[mac["id"]] = mac
            made.append(copy.deepcopy(mac))
        return 201, made

    @staticmethod
    def delete(store: dict[int, dict[str, Any]], sent: list[dict[str, Any]]) -> tuple[int, Any]:
        for fields in sent:
            del store[fields["id"]]
        return 204, None

    def patch(self, store: dict[int, dict[str, Any]], sent: list[dict[str, Any]]) -> tuple[int, Any]:
        for fields in sent:
            store[fields["id"]].update(self.shaped(fields))
            if "mac_address" in fields and store is self.ifaces:
                self.create_macs([{"mac_address": fields["mac_address"], "assigned_object_type":
                                   "virtualization.vminterface", "assigned_object_id": fields["id"]}])
        return 200, [copy.deepcopy(store[fields["id"]]) for fields in sent]


@pytest.fixture
def netbox_state(fake: FakeNetBox, recorded: Callable[[str], Any]) -> StatefulNetBox:
    """The stateful NetBox, served for the recorded version."""
    return StatefulNetBox(fake, recorded)


def created_instance(instances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A recorded instance, as makevm would record it after creating it."""
    return copy.deepcopy(instances["inst2.gl.test"])


def test_record_creates_then_writes_nothing_the_second_time(
        netbox_state: StatefulNetBox, fake: FakeNetBox, meta: dict[str, Any], version: str,
        instances: dict[str, dict[str, Any]]) -> None:
    client = make_client(meta)
    instance = created_instance(instances)
    ip = next(iter(netbox_state.ips.values()))
    first = sync_vm.record_instance(client, instance, cluster_id=4, addresses=[ip])
    mac_step = [] if version >= "v4.7" else ["mac-set"]  # 4.7 takes the MAC with the new interface
    assert first.created and [write.split()[0] for write in first.writes] == [
        "vm-create", "vm-interface-create", *mac_step, "ip-address-update", "vm-update"]
    vm = netbox_state.vms[first.vm["id"]]
    assert (vm["name"], vm["cluster"]["id"], vm["status"]["value"], vm["memory"], vm["disk"]) == (
        "inst2.gl.test", 4, "active", 128, sum(instance["disk.sizes"]))
    [iface] = netbox_state.ifaces.values()
    assert iface["name"] == "eth0" and sync_vm.interface_mac(iface) == instance["nic.macs"][0]
    assert (ip_now := netbox_state.ips[ip["id"]])["assigned_object_id"] == iface["id"]
    assert ip_now["dns_name"] == "inst2.gl.test" and vm["primary_ip4"]["id"] == ip["id"]

    writes_before = len(fake.writes())
    again = sync_vm.record_instance(client, instance, cluster_id=4, addresses=[netbox_state.ips[ip["id"]]])
    assert again.writes == [] and not again.created and len(fake.writes()) == writes_before


def test_record_updates_only_what_changed(netbox_state: StatefulNetBox, fake: FakeNetBox,
                                          meta: dict[str, Any], instances: dict[str, dict[str, Any]]) -> None:
    client = make_client(meta)
    instance = created_instance(instances)
    sync_vm.record_instance(client, instance, cluster_id=4)
    instance["beparams"]["maxmem"] = 512
    instance["admin_state"] = "down"
    instance["nic.macs"] = ["aa:00:00:12:34:56"]
    writes_before = len(fake.writes())
    result = sync_vm.record_instance(client, instance, cluster_id=4)
    assert result.writes == ["vm-update memory,status", "mac-set x1"]
    vm = netbox_state.vms[result.vm["id"]]
    assert (vm["memory"], vm["status"]["value"]) == (512, "offline")
    assert sync_vm.interface_mac(next(iter(netbox_state.ifaces.values()))) == "aa:00:00:12:34:56"
    assert [mac["mac_address"] for mac in netbox_state.macs.values()] == ["aa:00:00:12:34:56"]
    patched = [call for call in fake.writes()[writes_before:] if "virtual-machines" in call["path"]]
    assert [sorted(obj) for call in patched for obj in call["body"]] == [["id", "memory", "status"]]


def test_record_in_dry_run_sends_no_write_and_says_what_it_skips(
        netbox_state: StatefulNetBox, fake: FakeNetBox, meta: dict[str, Any], version: str,
        instances: dict[str, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    changes = ChangeLog(dry_run=True)
    client = make_client(meta, dry_run=True, changes=changes)
    planned_ip = {"id": None, "address": "198.18.16.9/24", "dns_name": "inst2.gl.test"}
    with caplog.at_level(logging.INFO):
        result = sync_vm.record_instance(client, created_instance(instances), cluster_id=4, addresses=[planned_ip])
    assert fake.writes() == [] and netbox_state.vms == {}
    assert result.created and result.vm["id"] is None
    assert [change.action for change in changes.changes] == ["vm-create", "vm-interface-create"]
    assert all(change.dry_run for change in changes.changes)
    mac = created_instance(instances)["nic.macs"][0]
    if version >= "v4.7":
        assert changes.changes[1].detail["fields"]["mac_address"] == mac
    else:
        assert f"Would set MAC {mac} on eth0" in caplog.text
    assert "Would assign 198.18.16.9/24 to eth0" in caplog.text


def test_record_refuses_addresses_without_a_nic(netbox_state: StatefulNetBox, meta: dict[str, Any],
                                                instances: dict[str, dict[str, Any]]) -> None:
    instance = {**created_instance(instances), "nic.macs": [], "nic.names": []}
    with pytest.raises(ValueError, match="no NIC"):
        sync_vm.record_instance(make_client(meta), instance, cluster_id=4,
                                addresses=list(netbox_state.ips.values()))
