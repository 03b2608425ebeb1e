"""What the DNS scope lab modules share: a test's configuration copy, clients, `t-<random>-*` names, free
addresses of 198.18.16.200-250 (no NetBox address, no PTR), and the DNS helpers their checks and cleanups use.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import pytest
import yaml
from tests.lab.cookbook_lab import ganeti, netbox

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.dns.diff import compute
from libcluster.dns.records import build
from libcluster.ganeti import GanetiCluster
from cookbook_lab import topology
from libcluster.netbox import NetBox


@dataclass
class Env:
    """The test's configuration, clients, names and free addresses."""

    tmp: Path
    raw: dict[str, Any]
    token: str
    ganeti: GanetiCluster
    netbox: NetBox
    dns: DNS
    free: list[str]

    def name(self, role: str) -> str:
        """FQDN of a role."""
        return f"{self.token}-{role}.{topology.DOMAIN}"

    def config(self, label: str = "config", dns_changes: dict[str, Any] | None = None, **changes: Any) -> Path:
        """The test's configuration with some top-level sections replaced and some dns keys changed."""
        data = {**json.loads(json.dumps(self.raw)), **changes}
        data["dns"] = {**data["dns"], **(dns_changes or {})}
        path = self.tmp / f"{label}.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return path

    def put(self, entries: list[tuple[str, str]]) -> None:
        """Hand-made A/AAAA and PTR records for (name, address) entries, straight to the server."""
        wanted = build(entries, self.dns.zones, 300).records
        self.dns.apply(compute(wanted, self.dns.current(set(wanted)), self.dns.zones, scope=set(wanted)))

    def clear(self, name: str | None = None, address: str | None = None) -> None:
        """Remove name's A/AAAA and address's PTR from the server, whoever made them (cleanup)."""
        keys = set()
        if name:
            keys |= {(dns.name.from_text(name), rdtype) for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
        if address:
            keys.add((dns.reversename.from_address(address), dns.rdatatype.PTR))
        current = self.dns.current(keys)
        self.dns.apply(compute({}, current, self.dns.zones, scope=set(current)))


def make_env(lab: dict[str, Any], lab_config: Path, tmp: Path, parts: tuple[str, ...], addresses: int) -> Env:
    """An Env with its own logs and audit under tmp, skipping the test when a lab part it needs is down."""
    for part in parts:
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    raw = yaml.safe_load(lab_config.read_text())
    raw.update(logs_base_dir=str(tmp / "logs"), audit_log=str(tmp / "audit.jsonl"))
    client = DNS(config_module.load(lab_config).section("dns"), dry_run=False, changes=ChangeLog(dry_run=False))
    nb = netbox(lab_config)
    used = {str(ip["address"]).split("/")[0] for ip in nb.objects("ip-address", parent="198.18.16.0/24")}
    candidates = [f"198.18.16.{n}" for n in range(200, 251) if f"198.18.16.{n}" not in used]
    secrets.SystemRandom().shuffle(candidates)
    free = [a for a in candidates if not client.resolve(dns.reversename.from_address(a).to_text(), "PTR")]
    return Env(tmp=tmp, raw=raw, token=f"t-{secrets.token_hex(4)}", ganeti=ganeti(lab_config), netbox=nb,
               dns=client, free=free[:addresses])
