"""Scope on every DNS write path, on the real lab: the `dns.netbox` scope (names, networks) holds for the one-VM
sync the hooks agent runs, the whole-cluster delete and makevm; makevm's rollback undoes only what it wrote; a
failed DNS update of a VM being deleted leaves NetBox as it was, so the retry still removes the records; an
address of our VM set to deprecated loses its records in sre.dns.netbox; a name in neither Ganeti nor NetBox
publishes nothing, even for a loose NetBox address with that dns_name.

Names are `t-<random>-*.lab.example` and addresses free ones of 198.18.16.200-250; sync runs are limited to
them (--vm, --match) and sre.dns.netbox to them (dns.netbox scope), since others use the same lab at the same
time. Everything the tests make is removed at the end, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import pytest
from tests.lab import dns_scope_lab
from tests.lab.cookbook_lab import Run, remove_test_instance, run_cookbook

from libcluster.dns import DNSPrerequisiteError
from libcluster.dns.protection import owns_nothing
from cookbook_lab import topology
from libcluster.sync import dns as sync_dns

ROLES = ("scoped", "gone", "mk", "undo", "retry", "retry2", "dep", "loose")
OUT_OF_SCOPE = {"names": ["*.vm.lab.example"], "networks": ["10.0.0.0/8"]}
"""A dns.netbox scope the test's names and addresses are outside of."""


class Env(dns_scope_lab.Env):
    """The scope-path tests' environment, with the lookups and NetBox objects they make."""

    def a(self, name: str) -> list[str]:
        """The A records the server answers for name."""
        return self.dns.resolve(name, "A")

    def ptr(self, address: str) -> list[str]:
        """The PTR records the server answers for address."""
        return self.dns.resolve(dns.reversename.from_address(address).to_text(), "PTR")

    def netbox_vm(self, role: str, address: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A NetBox VM of cluster A called after role, with eth0 and on it the active address named after it."""
        cluster = self.netbox.get("cluster", name="A", group_id=self.netbox.get("cluster-group", name="lab")["id"])
        [vm] = self.netbox.create("vm", [{"name": self.name(role), "cluster": cluster["id"], "status": "active"}])
        [iface] = self.netbox.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
        [ip] = self.netbox.create("ip-address", [{
            "address": f"{address}/24", "dns_name": self.name(role), "status": "active",
            "assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface["id"]}])
        return vm, ip


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The test's configuration and clients; its names removed from Ganeti, NetBox and DNS at the end."""
    base = dns_scope_lab.make_env(lab, lab_config, tmp_path_factory.mktemp("scope-paths"),
                                  ("ganeti", "netbox", "dns"), addresses=8)
    environment = Env(**vars(base))
    nb = environment.netbox
    try:
        yield environment
    finally:
        for role in ROLES:
            for ip in nb.objects("ip-address", dns_name=environment.name(role)):
                environment.clear(address=str(ip["address"]).split("/")[0])
            remove_test_instance(environment.ganeti, nb, environment.name(role))
            environment.clear(environment.name(role))
        for address in environment.free:
            environment.clear(address=address)


def sync(env: Env, config: Path, *args: str) -> Run:
    """sre.ganeti.sync-netbox on the lab cluster as the agent (--vm) or an operator (--match) runs it."""
    return run_cookbook(config, "sre.ganeti.sync-netbox", "--cluster", topology.CLUSTER, *args)


def flat(run: Run) -> str:
    """The run's log output on one line (the table wraps)."""
    return " ".join(run.stderr.split())


def test_the_one_vm_sync_the_hooks_agent_runs_publishes_nothing_outside_the_dns_netbox_scope(env: Env) -> None:
    scoped = env.name("scoped")
    pnode = sorted(env.ganeti.group("A")["node_list"])[0]
    env.ganeti.create_instance(scoped, disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1,
                               pnode=pnode, name_check=False, nics=[{"ip": env.free[0]}]).wait(timeout=300)
    followed = sync(env, env.config("outside", {"netbox": OUT_OF_SCOPE}), "--vm", scoped)
    assert followed.returncode == 0, followed.stderr
    assert [str(ip["address"]).split("/")[0] for ip in env.netbox.objects("ip-address", dns_name=scoped)] == [
        env.free[0]]
    assert env.a(scoped) == [] and env.ptr(env.free[0]) == []
    assert f"{scoped}. A: the server has nothing, NetBox gives {env.free[0]}; left as is: outside dns.netbox " \
        "scope" in flat(followed)


def test_the_whole_cluster_delete_removes_no_record_outside_the_dns_netbox_scope(env: Env) -> None:
    gone = env.name("gone")
    env.netbox_vm("gone", env.free[1])
    env.put([(gone, env.free[1])])
    whole = sync(env, env.config("outside", {"netbox": OUT_OF_SCOPE}), "--match", gone, "--delete")
    assert whole.returncode == 0, whole.stderr
    assert env.netbox.objects("vm", name=gone) == []
    assert env.a(gone) == [env.free[1]] and env.ptr(env.free[1]) == [f"{gone}."]
    assert f"{gone}. A: the server has {env.free[1]}, NetBox gives nothing; left as is: outside dns.netbox scope" \
        in flat(whole)


def test_makevm_refuses_a_name_outside_the_dns_netbox_scope_before_any_change(env: Env) -> None:
    made = run_cookbook(env.config("outside", {"netbox": OUT_OF_SCOPE}), "sre.ganeti.makevm", "--cluster",
                        topology.CLUSTER, "--group", "A", f"{env.token}-mk")
    assert made.returncode == 10, made.stderr
    assert f"DNS: {env.name('mk')}. A: the server has nothing" in flat(made)
    assert "left as is: outside dns.netbox scope" in made.stderr
    assert env.netbox.objects("ip-address", dns_name=env.name("mk")) == [] and env.a(env.name("mk")) == []


def test_a_rollback_undoes_only_what_its_run_wrote_not_an_rrset_someone_else_created_after_the_plan(
        env: Env) -> None:
    name, address, theirs = env.name("undo"), env.free[2], env.free[3]
    planned = env.dns.host_diff(name, [address], owns=owns_nothing)
    assert {change.action for change in planned} == {"add"} and len(planned) == 2
    env.put([(name, theirs)])  # someone else creates the A after the plan: its PTR is theirs too
    with pytest.raises(DNSPrerequisiteError):
        env.dns.apply(planned)
    assert env.ptr(address) == [f"{name}."]  # the PTR message went first (its zone sorts first)

    undo = sync_dns.restore(env.dns, planned)
    assert [(change.action, change.name.to_text()) for change in undo] == [
        ("delete", dns.reversename.from_address(address).to_text())]
    assert env.ptr(address) == []
    assert env.a(name) == [theirs] and env.ptr(theirs) == [f"{name}."]


@pytest.mark.parametrize("how", ["--vm", "--match"])
def test_a_failed_dns_update_of_a_deleted_vm_leaves_netbox_as_it_was_and_the_retry_removes_the_records(
        env: Env, how: str) -> None:
    role = "retry" if how == "--vm" else "retry2"
    name, address = env.name(role), env.free[4] if how == "--vm" else env.free[5]
    vm, _ = env.netbox_vm(role, address)
    env.put([(name, address)])
    wrong = env.config(f"wrong-secret-{role}", {"tsig_secret": "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA=="})
    good = env.config(f"good-{role}")

    failed = sync(env, wrong, how, name, "--delete")
    assert failed.returncode != 0, failed.stderr
    assert [found["id"] for found in env.netbox.objects("vm", name=name)] == [vm["id"]]
    assert [str(ip["address"]) for ip in env.netbox.objects("ip-address", dns_name=name)] == [f"{address}/24"]
    assert env.a(name) == [address]

    retried = sync(env, good, how, name, "--delete")
    assert retried.returncode == 0, retried.stderr
    assert env.netbox.objects("vm", name=name) == []
    assert env.a(name) == [] and env.ptr(address) == []


def test_dns_netbox_removes_the_records_of_an_address_of_our_vm_set_to_deprecated(env: Env) -> None:
    name, address = env.name("dep"), env.free[6]
    scoped = env.config("dep-scope", {"netbox": {"names": [f"{env.token}-*.{topology.DOMAIN}"],
                                                 "networks": [f"{address}/32"], "max_changes": 20,
                                                 "max_percent": 0}})
    _, ip = env.netbox_vm("dep", address)
    first = run_cookbook(scoped, "sre.dns.netbox")
    assert first.returncode == 0, first.stderr
    assert env.a(name) == [address] and env.ptr(address) == [f"{name}."]

    env.netbox.update("ip-address", [{"id": ip["id"], "status": "deprecated"}])
    again = run_cookbook(scoped, "sre.dns.netbox")
    assert again.returncode == 0, again.stderr
    assert env.a(name) == [] and env.ptr(address) == []


def test_a_name_in_neither_ganeti_nor_netbox_publishes_nothing_even_for_a_loose_address_named_after_it(
        env: Env) -> None:
    name, address = env.name("loose"), env.free[7]
    env.netbox.create("ip-address", [{"address": f"{address}/24", "dns_name": name, "status": "active"}])
    done = sync(env, env.config("plain"), "--vm", name, "--delete")
    assert done.returncode == 0, done.stderr
    assert f"nothing vm {name} in neither Ganeti nor NetBox cluster group lab: nothing changed" in flat(done)
    assert env.a(name) == [] and env.ptr(address) == []
    assert done.audit is not None and done.audit["changes"] == []
