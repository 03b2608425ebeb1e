"""sre.dns.netbox on the real lab NetBox and Knot: drifted zones (missing record, wrong PTR) are fixed exactly,
a stale record NetBox does not account for is kept and reported, a second run sends no update, a dry-run
changes nothing, the threshold stops an oversized change
(--force applies it), a wrong TSIG key is a clear error, and snippets parse back.

Other helpers change the same zones at the same time, so the runs are limited to this test's records with the
dns.netbox scope (its names `t-<random>-*.lab.example`, its addresses), and "nothing changed" is checked on
the in-scope rrsets read by AXFR and on the run's audit record, not on zone serials that others move.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import dns.zone
import pytest
import yaml

from libcluster import audit, config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS, Records
from libcluster.dns.diff import compute
from libcluster.dns.records import build
from cookbook_lab import topology
from libcluster.netbox import NetBox
from libcluster.sync.netbox_dns import DNSSyncSettings, Scope
from tests.lab.cookbook_lab import run_cookbook

ZONES = (topology.DOMAIN, "17.18.198.in-addr.arpa", "0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa")


@dataclass
class Env:
    """The test's configuration (scoped to its records), clients, names and addresses."""

    raw: dict[str, Any]
    tmp: Path
    token: str
    netbox: NetBox
    dns: DNS
    scope: Scope
    v4: list[str]
    v6: list[str]

    def name(self, role: str) -> str:
        """FQDN of a role."""
        return f"{self.token}-{role}.{topology.DOMAIN}"

    def config(self, label: str = "config", **dns_keys: Any) -> Path:
        """The test's configuration, with some keys of the dns section (or of dns.netbox) replaced."""
        data = json.loads(json.dumps(self.raw))
        netbox_keys = dns_keys.pop("netbox", {})
        data["dns"].update(dns_keys)
        data["dns"]["netbox"].update(netbox_keys)
        path = self.tmp / f"{label}.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return path

    def run(self, *args: str, config: Path | None = None, dry_run: bool = False) -> Any:
        """sre.dns.netbox as an operator runs it."""
        return run_cookbook(config or self.config(), "sre.dns.netbox", *args, dry_run=dry_run)

    def snapshot(self) -> dict[tuple[str, str], list[str]]:
        """The in-scope rrsets of the zones as the server has them (AXFR)."""
        found = {}
        for zone in ZONES:
            for (name, rdtype), rrset in self.dns.zone_records(zone).items():
                if self.scope.owns(name, rdtype):
                    found[(name.to_text(), dns.rdatatype.to_text(rdtype))] = sorted(r.to_text() for r in rrset)
        return found

    def server_apply(self, wanted: Records, keys: set[tuple[dns.name.Name, dns.rdatatype.RdataType]]) -> None:
        """Make the server hold wanted for keys (test drift and cleanup), straight through the DNS client."""
        self.dns.apply(compute(wanted, self.dns.current(keys), self.dns.zones, scope=keys))

    def audit(self) -> dict[str, Any]:
        """The newest audit record of sre.dns.netbox."""
        return [record for record in audit.read_records(self.raw["audit_log"])
                if record["cookbook"] == "sre.dns.netbox"][-1]


def free_addresses(netbox: NetBox, client: DNS) -> tuple[list[str], list[str]]:
    """Four IPv4 addresses of 198.18.17.200-250 unknown to NetBox and DNS, and two of a random IPv6 /64."""
    used = {str(ip["address"]).split("/")[0] for ip in netbox.objects("ip-address", parent="198.18.17.0/24")}
    candidates = [f"198.18.17.{n}" for n in range(200, 251) if f"198.18.17.{n}" not in used]
    secrets.SystemRandom().shuffle(candidates)
    free = (a for a in candidates if not client.resolve(dns.reversename.from_address(a).to_text(), "PTR"))
    v4 = list(itertools.islice(free, 4))
    network = ipaddress.IPv6Network(f"2001:2:0:f{secrets.token_hex(2)[1:]}::/64")
    return v4, [str(network[5]), str(network[6])]


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """NetBox addresses a (v4 and v6), b (v4), c (v6) named after the token, on a NetBox VM of the lab cluster
    group (so NetBox accounts for their records); all of it removed at the end."""
    for part in ("netbox", "dns", "etcd"):
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    token = f"t-{secrets.token_hex(4)}"
    tmp = tmp_path_factory.mktemp("dns")
    raw = yaml.safe_load(lab_config.read_text())
    root = config_module.load(lab_config)
    changes = ChangeLog(dry_run=False)
    netbox = NetBox(root.section("netbox"), read_write=True, dry_run=False, changes=changes)
    client = DNS(root.section("dns"), dry_run=False, changes=changes)
    v4, v6 = free_addresses(netbox, client)
    networks = [f"{a}/32" for a in v4] + [str(ipaddress.IPv6Network(f"{v6[0]}/64", strict=False))]
    raw.update(logs_base_dir=str(tmp / "logs"), audit_log=str(tmp / "audit.jsonl"))
    raw["dns"]["netbox"] = {"names": [f"{token}-*.{topology.DOMAIN}"], "networks": networks, "max_changes": 20,
                            "max_percent": 0}
    settings = DNSSyncSettings.from_config(config_module.Section(raw, "", "test"))
    environment = Env(raw=raw, tmp=tmp, token=token, netbox=netbox, dns=client,
                      scope=Scope(settings, client.zones), v4=v4, v6=v6)
    cluster = netbox.get("cluster", name="A", group_id=netbox.get("cluster-group", name=topology.CLUSTER)["id"])
    [vm] = netbox.create("vm", [{"name": environment.name("vm"), "cluster": cluster["id"], "status": "active"}])
    [iface] = netbox.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
    on_vm = {"status": "active", "assigned_object_type": "virtualization.vminterface",
             "assigned_object_id": iface["id"]}
    created = netbox.create("ip-address", [
        {"address": f"{v4[0]}/24", "dns_name": environment.name("a"), **on_vm},
        {"address": f"{v6[0]}/64", "dns_name": environment.name("a"), **on_vm},
        {"address": f"{v4[1]}/24", "dns_name": environment.name("b"), **on_vm},
        {"address": f"{v6[1]}/64", "dns_name": environment.name("c"), **on_vm},
    ])
    try:
        yield environment
    finally:
        netbox.release_ips(created)
        netbox.delete("vm", [vm])
        current = {}
        for zone in ZONES:
            current.update({k: v for k, v in client.zone_records(zone).items() if environment.scope.owns(*k)})
        client.apply(compute({}, current, client.zones, scope=set(current)))


def wanted_records(env: Env) -> dict[tuple[str, str], list[str]]:
    """What the test's NetBox addresses give, as a snapshot."""
    built = build([(env.name("a"), env.v4[0]), (env.name("a"), env.v6[0]), (env.name("b"), env.v4[1]),
                   (env.name("c"), env.v6[1])], env.dns.zones, env.raw["dns"]["ttl"])
    return {(name.to_text(), dns.rdatatype.to_text(rdtype)): sorted(r.to_text() for r in rrset)
            for (name, rdtype), rrset in built.records.items()}


def test_dns_follows_netbox_exactly(env: Env) -> None:
    first = env.run()
    assert first.returncode == 0, first.stderr
    assert env.snapshot() == wanted_records(env)
    assert len(env.audit()["changes"]) == 8

    a_name, b_ptr = dns.name.from_text(env.name("a")), dns.reversename.from_address(env.v4[1])
    stale = build([(env.name("stale"), env.v4[2])], env.dns.zones, 300).records
    wrong = build([(env.name("wrong"), env.v4[1])], env.dns.zones, 300).records
    env.server_apply({}, {(a_name, dns.rdatatype.A)})
    env.server_apply({k: v for k, v in stale.items() if k[1] == dns.rdatatype.A},
                     {k for k in stale if k[1] == dns.rdatatype.A})
    env.server_apply({(b_ptr, dns.rdatatype.PTR): wrong[(b_ptr, dns.rdatatype.PTR)]}, {(b_ptr, dns.rdatatype.PTR)})
    drifted = env.snapshot()

    dry = env.run(dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert "Would apply 2 rrset changes in 2 update message(s)" in dry.stderr
    assert env.snapshot() == drifted
    assert all(change["dry_run"] for change in env.audit()["changes"])

    fixed = env.run()
    assert fixed.returncode == 0, fixed.stderr
    assert "Applied 2 rrset changes in 2 update message(s)" in fixed.stderr
    assert {(c["action"], c["target"], c["detail"]["type"]) for c in env.audit()["changes"]} == {
        ("record-add", f"{env.name('a')}.", "A"),
        ("record-replace", b_ptr.to_text(), "PTR"),
    }
    assert f"Not ours: {env.name('stale')}. A: the server has {env.v4[2]}, NetBox gives nothing; left as is" in \
        " ".join(fixed.stderr.split())
    stale_key = (f"{env.name('stale')}.", "A")
    assert env.snapshot() == {**wanted_records(env), stale_key: [env.v4[2]]}

    again = env.run()
    assert again.returncode == 0 and "1 rrsets not ours left as they are: nothing to change" in again.stderr
    assert env.audit()["changes"] == []
    env.server_apply({}, {(dns.name.from_text(env.name("stale")), dns.rdatatype.A)})
    last = env.run()
    assert last.returncode == 0 and "DNS matches NetBox: nothing to change" in last.stderr


def test_the_threshold_stops_an_oversized_difference_and_force_applies_it(env: Env) -> None:
    assert env.run().returncode == 0
    keys = {(dns.name.from_text(env.name(role)), rdtype) for role, rdtype in (
        ("a", dns.rdatatype.A), ("b", dns.rdatatype.A), ("c", dns.rdatatype.AAAA))}
    env.server_apply({}, keys)
    drifted = env.snapshot()
    small = env.config("small", netbox={"max_changes": 2, "max_percent": 0})
    stopped = env.run(config=small)
    assert stopped.returncode == 1
    assert "Stopped, nothing applied: the difference changes 3 rrsets (3 add), more than the threshold of 2" in \
        stopped.stderr
    assert env.snapshot() == drifted
    forced = env.run("--force", config=small)
    assert forced.returncode == 0, forced.stderr
    assert env.snapshot() == wanted_records(env)


def test_a_wrong_tsig_key_is_a_clear_error_without_change(env: Env) -> None:
    before = env.snapshot()
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = env.run(config=env.config("wrong", tsig_secret=other))
    assert wrong.returncode == 2
    assert "rejected the signature of TSIG key 'cookbooks' (hmac-sha256): wrong secret" in wrong.stderr
    assert other not in wrong.stdout + wrong.stderr
    unknown = env.run(config=env.config("unknown", tsig_name="nobody"))
    assert unknown.returncode == 2 and "does not know TSIG key 'nobody'" in unknown.stderr
    assert env.snapshot() == before


def test_snippets_hold_the_records_and_parse_back(env: Env) -> None:
    out = env.tmp / "snippets"
    done = env.run("--snippets", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted(ZONES)
    found = {}
    for path in out.iterdir():
        zone = dns.zone.from_text(path.read_text(), origin=path.name, relativize=False, check_origin=False)
        for name, rdataset in zone.iterate_rdatasets():
            found[(name.to_text(), dns.rdatatype.to_text(rdataset.rdtype))] = sorted(r.to_text() for r in rdataset)
    assert found == wanted_records(env)
