"""What the lab tests of a VM's life (makevm ... decommission-vm) share: a configuration of their own, VMs made by
makevm and always removed, and one snapshot of what Ganeti, NetBox and DNS hold of a VM ("nothing changed" probes).

The configuration is a copy of the lab's with this repository's cookbooks and the test's own logs and audit
file (other engineers' test sessions rewrite the shared lab configuration).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.reversename
import pytest
import yaml

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.dns.protection import owns_everything
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from tests.lab.cookbook_lab import ganeti, netbox, remove_test_instance, run_cookbook

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "lab.example"
VM_TYPE = "virtualization.virtualmachine"


def own_config(lab_config: Path, tmp: Path, **cluster_keys: Any) -> Path:
    """The lab configuration with this repository's cookbooks, logs and audit file under tmp, and keys of the lab
    cluster replaced (e.g. groups)."""
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [str(REPO)]
    data["logs_base_dir"] = str(tmp / "logs")
    data["audit_log"] = str(tmp / "logs" / "audit.jsonl")
    data["ganeti"]["clusters"]["lab"].update(cluster_keys)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def dns_client(config: Path) -> DNS:
    """A DNS client of the lab (real writes: for set-up and cleanup only)."""
    return DNS(config_module.load(config).section("dns"), dry_run=False, changes=ChangeLog(dry_run=False))


def records(config: Path, fqdn: str, addresses: list[str]) -> dict[str, list[str]]:
    """What the lab's DNS answers for fqdn (A, AAAA) and for the PTRs of addresses (and of its A/AAAA ones)."""
    client = dns_client(config)
    found = {rdtype: sorted(client.resolve(fqdn, rdtype)) for rdtype in ("A", "AAAA")}
    for address in sorted({*addresses, *found["A"], *found["AAAA"]}):
        found[f"PTR {address}"] = sorted(client.resolve(dns.reversename.from_address(address).to_text(), "PTR"))
    return found


@dataclass(frozen=True)
class VMState:
    """What Ganeti, NetBox and DNS hold of one VM: compared before and after a run that must change nothing."""

    instance: dict[str, Any] | None
    vms: list[dict[str, Any]]
    interfaces: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    netbox_changes: int
    dns: dict[str, list[str]]

    @classmethod
    def read(cls, config: Path, fqdn: str) -> VMState:
        """Read the instance (None: gone), the NetBox VM, its interfaces and addresses, and its DNS records."""
        try:
            raw = ganeti(config).instance(fqdn).raw
            instance: dict[str, Any] | None = {key: raw.get(key) for key in (
                "admin_state", "pnode", "snodes", "disk.sizes", "beparams", "nic.ips", "nic.macs", "disk_template",
                "mtime")}
        except RapiNotFoundError:
            instance = None
        client = netbox(config)
        vms = client.objects("vm", name=fqdn)
        ids = [int(vm["id"]) for vm in vms]
        interfaces = client.objects("vm-interface", virtual_machine_id=ids) if ids else []
        addresses = client.objects("ip-address", dns_name=fqdn)
        changes = sum(client.count("object-change", changed_object_type=VM_TYPE, changed_object_id=vm_id)
                      for vm_id in ids)
        return cls(instance, _plain(vms), _plain(interfaces), _plain(addresses), changes,
                   records(config, fqdn, [str(ip["address"]).split("/")[0] for ip in addresses]))

    def gone(self) -> bool:
        """Nothing of the VM is left anywhere: no instance, NetBox VM, interface, address or DNS record."""
        return (self.instance is None and not self.vms and not self.interfaces and not self.addresses
                and not any(self.dns.values()))


def _plain(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NetBox objects without the fields that change on a read (last_updated stays: a write changes it)."""
    return sorted(({key: value for key, value in obj.items() if key not in ("display", "url", "display_url")}
                   for obj in objects), key=lambda obj: int(obj["id"]))


def make_vm(config: Path, hostname: str, *options: str) -> str:
    """Create HOSTNAME.lab.example with makevm in group A (options added, e.g. --disk-template sharedfile)."""
    run = run_cookbook(config, "sre.ganeti.makevm", "--cluster", "lab", "--group", "A", *options, hostname)
    assert run.returncode == 0, run.stderr[-2000:]
    return f"{hostname}.{DOMAIN}"


def remove_everything(config: Path, fqdn: str) -> None:
    """Cleanup: whatever is left of a test VM goes (instance, NetBox addresses and VM, DNS records)."""
    cluster: GanetiCluster = ganeti(config)
    remove_test_instance(cluster, netbox(config), fqdn)
    dns_client(config).remove_host(fqdn, owns=owns_everything)


@pytest.fixture
def vm_names(lab_config: Path, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Gives unique host names (prefix-<random>) whose VMs are removed everywhere at the end."""
    names: list[str] = []

    def name(prefix: str) -> str:
        names.append(f"{prefix}-{secrets.token_hex(3)}")
        return names[-1]

    yield name
    for hostname in names:
        remove_everything(lab_config, f"{hostname}.{DOMAIN}")
