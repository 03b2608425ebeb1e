"""decommission-vm on the lab, on VMs made by makevm: a wrong or missing FQDN (typed at a terminal, where -y does
not answer it, or repeated with --confirm-fqdn) and a dry-run change nothing in
Ganeti, NetBox or DNS (the dry-run shows the plan and Ganeti checks the remove in a dry-run job); a real run leaves
nothing of the VM anywhere, keeps (and reports) an address on its interface named after another host with that
host's DNS records, and its task id (-t) is in the audit record (start and end lines), the SAL START/END lines and
the NetBox change log entries of its writes.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import topology
from libcluster.chatops.probe import IrcProbe
from libcluster.dns.protection import owns_everything, owns_nothing
from libcluster.netbox.kinds import VM_INTERFACE_TYPE
from tests.lab.chatops_lab import lab_tls
from tests.lab.cookbook_lab import (
    ganeti,
    jobs_since,
    last_job_id,
    netbox,
    planned_only,
    real_jobs_since,
    run_cookbook,
    typed_at_a_terminal,
)
from tests.lab.vm_life_lab import (  # noqa: F401 - vm_names is a fixture
    VM_TYPE,
    VMState,
    dns_client,
    make_vm,
    own_config,
    records,
    vm_names,
)

COOKBOOK = "sre.ganeti.decommission-vm"


@pytest.fixture
def config(lab_part: Callable[[str], dict[str, Any]], lab_config: Path, tmp_path: Path) -> Path:
    """This test's configuration (skips when Ganeti, NetBox, DNS or etcd are down)."""
    for part in ("ganeti", "netbox", "dns", "etcd"):
        lab_part(part)
    return own_config(lab_config, tmp_path / "run")


@pytest.fixture
def sal_watcher(lab_part: Callable[[str], dict[str, Any]]) -> Iterator[IrcProbe]:
    """A real IRC client in the lab's SAL channel."""
    irc = lab_part("irc")
    client = IrcProbe(irc["host"], irc["port"], f"dcwatch-{secrets.token_hex(3)}", tls=lab_tls(irc))
    client.join(topology.SAL_CHANNEL)
    yield client
    client.close()


def test_a_wrong_or_missing_fqdn_and_a_dry_run_change_nothing(config: Path,
                                                              vm_names: Callable[[str], str]) -> None:  # noqa: F811
    fqdn = make_vm(config, vm_names("dc"))
    before = VMState.read(config, fqdn)
    assert before.instance and before.vms and before.interfaces and len(before.addresses) == 2 and before.dns["A"]
    marker = last_job_id(ganeti(config))

    wrong = run_cookbook(config, COOKBOOK, "--cluster", "lab", "--confirm-fqdn", f"x{fqdn}", fqdn)
    assert wrong.returncode == 99 and f"--confirm-fqdn x{fqdn} is not {fqdn}: nothing done" in wrong.stderr
    untyped = run_cookbook(config, COOKBOOK, "--cluster", "lab", fqdn)  # -y but no terminal and no --confirm-fqdn
    assert untyped.returncode == 99 and f"repeat it with --confirm-fqdn {fqdn}" in untyped.stderr
    unknown = run_cookbook(config, COOKBOOK, "--cluster", "lab", "--confirm-fqdn", f"nosuch.{fqdn}", f"nosuch.{fqdn}")
    assert unknown.returncode == 94 and f"no instance nosuch.{fqdn} in cluster lab" in unknown.stderr

    dry = run_cookbook(config, COOKBOOK, "--cluster", "lab", "--confirm-fqdn", fqdn, fqdn, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry)
    plan = dry.stdout
    assert f"Decommissioning {fqdn} (cluster lab): this cannot be undone." in plan
    assert "removed with its disks (disk 0: 1.0 GiB)" in plan
    assert f"NetBox: VM {fqdn} (id {before.vms[0]['id']}, cluster A) deleted" in plan
    assert f"interface eth0 (id {before.interfaces[0]['id']}) deleted" in plan
    for ip in before.addresses:
        assert f"address {ip['address']} (id {ip['id']}) released" in plan
    assert f"- {fqdn}. 300 A {before.dns['A'][0]}" in plan and f"- {fqdn}. 300 AAAA {before.dns['AAAA'][0]}" in plan
    assert plan.count(f"PTR {fqdn}.") == 2
    checks = jobs_since(ganeti(config), marker, fqdn)
    assert [job["summary"] for job in checks] == [[f"INSTANCE_REMOVE({fqdn})"]] and checks[0]["dry_run"]
    assert checks[0]["status"] == "success", "Ganeti's own check of the remove"
    assert VMState.read(config, fqdn) == before


def test_the_fqdn_typed_wrong_at_a_terminal_changes_nothing_and_typed_right_decommissions(
        config: Path, vm_names: Callable[[str], str]) -> None:  # noqa: F811
    fqdn = make_vm(config, vm_names("dc"))
    before, marker = VMState.read(config, fqdn), last_job_id(ganeti(config))
    code, shown = typed_at_a_terminal(config, [COOKBOOK, "--cluster", "lab", fqdn], f"x{fqdn}")
    assert code == 99 and f"Type the FQDN of the VM ({fqdn}) to confirm" in shown
    assert f"typed 'x{fqdn}', not {fqdn}: nothing done" in shown, "-y does not answer it"
    assert real_jobs_since(ganeti(config), marker, fqdn) == [] and VMState.read(config, fqdn) == before
    code, shown = typed_at_a_terminal(config, [COOKBOOK, "--cluster", "lab", fqdn], fqdn)
    assert code == 0 and f"{fqdn} is decommissioned" in shown and VMState.read(config, fqdn).gone()


def test_a_real_run_leaves_nothing_keeps_what_is_not_its_own_and_carries_the_task_id(
        config: Path, vm_names: Callable[[str], str], sal_watcher: IrcProbe) -> None:  # noqa: F811
    fqdn = make_vm(config, vm_names("dc"))
    nb = netbox(config)
    vm = nb.get("vm", name=fqdn)
    interface = nb.get("vm-interface", virtual_machine_id=vm["id"])
    other = f"{vm_names('dcother')}.lab.example"
    address = nb.available_ips(nb.get("prefix", prefix=topology.VM_PREFIXES["A"][0]), 1)[0]
    foreign = nb.create("ip-address", [{"address": address, "dns_name": other, "status": "active",
                                        "assigned_object_type": VM_INTERFACE_TYPE,
                                        "assigned_object_id": interface["id"]}])[0]
    dns_client(config).set_host(other, [address.split("/")[0]], owns=owns_nothing)
    other_records = records(config, other, [address.split("/")[0]])
    task = f"T{secrets.randbelow(10**6)}"
    try:
        run = run_cookbook(config, COOKBOOK, "--cluster", "lab", "-t", task, "--confirm-fqdn", fqdn, fqdn)
        assert run.returncode == 0, run.stderr[-3000:]
        assert VMState.read(config, fqdn).gone()
        kept = nb.get("ip-address", id=foreign["id"])
        assert kept["dns_name"] == other and kept["assigned_object_id"] is None
        assert records(config, other, [address.split("/")[0]]) == other_records and other_records["A"]
        assert f"KEPT: address {address} (id {foreign['id']}) named {other}: not its own" in run.stdout
        assert "not its own, kept with its DNS records" in run.stderr and f"ip-address  {address}" in run.stderr

        lines = [json.loads(line) for line in (config.parent / "logs" / "audit.jsonl").read_text().splitlines()]
        mine = [line for line in lines if line.get("id") == run.audit["id"]] if run.audit else []
        assert [(line["event"], line.get("task_id")) for line in mine if line["event"] in ("start", "end")] == [
            ("start", task), ("end", task)]
        assert run.audit is not None
        who = f"{run.audit['user']}@{socket.gethostname()}"
        sal_watcher.expect(rf"^{who} START - Cookbook {COOKBOOK} for {fqdn} on cluster lab \({task}\)$", timeout=30)
        sal_watcher.expect(rf"^{who} END \(PASS\) - Cookbook {COOKBOOK} \(exit_code=0\) for {fqdn} on cluster lab "
                           rf"\({task}\)$", timeout=30)
        entries = nb.objects("object-change", changed_object_type=VM_TYPE, changed_object_id=vm["id"])
        deleted = [entry for entry in entries if entry["action"]["value"] == "delete"]
        assert [entry["message"] for entry in deleted] == [f"cookbook {COOKBOOK} {task} (run {run.audit['id']})"]
        unassigned = nb.objects("object-change", changed_object_type="ipam.ipaddress", changed_object_id=foreign["id"])
        assert any(task in entry["message"] and entry["action"]["value"] == "update" for entry in unassigned)
    finally:
        nb.release_ips([foreign["id"]]) if nb.find("ip-address", id=foreign["id"]) else None
        dns_client(config).remove_host(other, owns=owns_everything)


def test_a_failed_ganeti_remove_touches_nothing_else(config: Path, vm_names: Callable[[str], str]) -> None:  # noqa: F811
    fqdn = make_vm(config, vm_names("dc"))
    before = VMState.read(config, fqdn)
    filter_uuid = _refuse_removes_of(config, fqdn)
    try:
        run = run_cookbook(config, COOKBOOK, "--cluster", "lab", "--confirm-fqdn", fqdn, fqdn)
    finally:
        _drop_filter(config, filter_uuid)
    assert run.returncode == 99 and ("instance-remove" in run.stderr or f"DELETE /2/instances/{fqdn}" in run.stderr)
    after = VMState.read(config, fqdn)
    assert after.vms == before.vms and after.addresses == before.addresses and after.dns == before.dns
    assert after.interfaces == before.interfaces and after.instance is not None


def _refuse_removes_of(config: Path, fqdn: str) -> str:
    """A Ganeti job filter rejecting the remove of fqdn (Ganeti refuses it); returns the filter's uuid."""
    reject = {"priority": 0, "action": "REJECT", "reason": [],
              "predicates": [["opcode", ["&", ["=", "OP_ID", "OP_INSTANCE_REMOVE"], ["=", "instance_name", fqdn]]]]}
    return str(ganeti(config).rapi.write("POST", "/2/filters", body=reject))


def _drop_filter(config: Path, uuid: str) -> None:
    ganeti(config).rapi.write("DELETE", f"/2/filters/{uuid}")
