"""makevm --network on the lab: group A has two networks (its default one, `lab`, and `private`, whose prefixes the
lab seeds in NetBox with their reverse zone in Knot): --network private takes the addresses from private's prefixes
(NetBox, A/AAAA and PTR records agree) and decommission-vm then leaves nothing of the VM; an unknown network is
refused naming the configured ones and nothing is created anywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import topology
from tests.lab.cookbook_lab import ganeti, last_job_id, netbox, real_jobs_since, run_cookbook
from tests.lab.vm_life_lab import VMState, make_vm, own_config, vm_names  # noqa: F401 - vm_names is a fixture


@pytest.fixture
def config(lab_part: Callable[[str], dict[str, Any]], lab_config: Path, tmp_path: Path) -> Path:
    """This test's configuration (skips when Ganeti, NetBox, DNS or etcd are down)."""
    for part in ("ganeti", "netbox", "dns", "etcd"):
        lab_part(part)
    return own_config(lab_config, tmp_path / "run")


def test_network_private_takes_its_addresses_from_the_private_prefixes(
        config: Path, vm_names: Callable[[str], str]) -> None:  # noqa: F811
    v4, v6 = (ipaddress.ip_network(prefix) for prefix in topology.VM_NETWORKS["A"]["private"])
    dry_name = vm_names("net")
    dry = run_cookbook(config, "sre.ganeti.makevm", "--cluster", "lab", "--group", "A", "--network", "private",
                       dry_name, dry_run=True)
    assert dry.returncode == 0 and "(cluster lab, group A, network private)" in dry.stderr
    assert f"(from {v4})" in dry.stderr and f"(from {v6})" in dry.stderr
    assert VMState.read(config, f"{dry_name}.lab.example").gone()

    fqdn = make_vm(config, vm_names("net"), "--network", "private")
    state = VMState.read(config, fqdn)
    addresses = sorted((ipaddress.ip_interface(str(ip["address"])) for ip in state.addresses), key=lambda a: a.version)
    assert [address.network for address in addresses] == [v4, v6]
    assert state.dns["A"] == [str(addresses[0].ip)] and state.dns["AAAA"] == [str(addresses[1].ip)]
    assert state.dns[f"PTR {addresses[0].ip}"] == [f"{fqdn}."] and state.dns[f"PTR {addresses[1].ip}"] == [f"{fqdn}."]
    assert state.instance is not None and state.instance["nic.ips"] in ([None], [str(addresses[0].ip)])
    assert ganeti(config).instance(fqdn).nic_links == (topology.NODE_BRIDGE,)

    gone = run_cookbook(config, "sre.ganeti.decommission-vm", "--cluster", "lab", "--confirm-fqdn", fqdn, fqdn)
    assert gone.returncode == 0 and VMState.read(config, fqdn).gone()
    assert not netbox(config).objects("ip-address", address=[str(address) for address in addresses])


def test_an_unknown_network_is_refused_naming_the_configured_ones(config: Path,
                                                                 vm_names: Callable[[str], str]) -> None:  # noqa: F811
    hostname = vm_names("net")
    marker = last_job_id(ganeti(config))
    run = run_cookbook(config, "sre.ganeti.makevm", "--cluster", "lab", "--group", "A", "--network", "dmz", hostname)
    assert run.returncode == 94 and "group A: unknown network 'dmz' (configured: lab, private)" in run.stderr
    other = run_cookbook(config, "sre.ganeti.makevm", "--cluster", "lab", "--group", "B", "--network", "private",
                         hostname)
    assert other.returncode == 94 and "group B: unknown network 'private' (configured: lab)" in other.stderr
    assert VMState.read(config, f"{hostname}.lab.example").gone()
    assert real_jobs_since(ganeti(config), marker, hostname) == []
