"""sre.ganeti.makevm's pure parts: argument types, defaults, instance policy, allocator messages, the plan.

Ganeti and NetBox data come from the recorded responses in tests/fixtures/recorded (Ganeti 3.0.2 RAPI
transcript, NetBox 4.7.3 bodies); allocator failure messages were recorded on the lab (Ganeti 3.0.2, hail).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cookbooks.sre.ganeti import makevm
from libcluster import clusters
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.dns.diff import compute
from libcluster.dns.records import build
from libcluster.dns.zones import Zones
from libcluster.ganeti.cluster import instance_create_body

HAIL_NO_MEMORY = ("Can't compute nodes using iallocator 'hail': Request failed: Group A (preferred): No valid "
                  "allocation solutions, failure reasons: FailMem: 2")
HAIL_NO_CPU = ("Can't compute nodes using iallocator 'hail': Request failed: Group A (preferred): No valid "
               "allocation solutions, failure reasons: FailCPU: 2")

LAB_CLUSTER = {
    "domain": "lab.example",
    "netbox_cluster_group": "lab",
    "defaults": {"vcpus": 1, "memory": 1, "disk": 1, "disk_template": "file", "os": "noop", "network": "lab"},
    "groups": {
        "A": {"netbox_cluster": "A", "nic_link": "gnt-br0", "prefixes": ["198.18.16.0/24", "2001:2:0:a::/64"],
              "networks": {"private": {"nic_link": "gnt-br1", "prefixes": ["198.18.18.0/24"]},
                           "storage": {"prefixes": ["198.18.19.0/24", "2001:2:0:1b::/64"]}}},
        "B": {"netbox_cluster": "B", "nic_link": None, "prefixes": ["198.18.17.0/24"]},
    },
}


@pytest.fixture
def settings() -> clusters.ClusterSettings:
    """The lab cluster's settings, as the lab's generated configuration has them."""
    return clusters.load(Section({"ganeti": {"clusters": {"lab": LAB_CLUSTER}}}, "", "test"), "lab")


@pytest.fixture(scope="module")
def transcript(recorded_dir: Path) -> list[dict[str, Any]]:
    """The recorded RAPI transcript."""
    lines = (recorded_dir / "ganeti" / "rapi-transcript-3.0.2.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def ipolicy(transcript: list[dict[str, Any]]) -> dict[str, Any]:
    """The instance policy of a node group as `GET /2/groups?bulk=1` returned it."""
    groups = next(entry["response"] for entry in transcript
                  if entry.get("path") == "/2/groups" and isinstance(entry.get("response"), list))
    return dict(groups[0]["ipolicy"])


def parse(*argv: str) -> argparse.Namespace:
    """Parse argv with the cookbook's own parser."""
    return makevm.MakeVM(ctx=None).argument_parser().parse_args(list(argv))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["vm1", "a", "db-01", "x" * 63, "9lives"])
def test_hostname_accepts_dns_labels(name: str) -> None:
    assert makevm.hostname_arg(name) == name


@pytest.mark.parametrize(("name", "message"), [
    ("vm1.lab.example", "looks like an FQDN: give the host name only (e.g. 'vm1')"),
    ("vm1.", "looks like an FQDN"),
    ("vm_1", "not a valid DNS label"),
    ("-vm", "not a valid DNS label"),
    ("vm-", "not a valid DNS label"),
    ("VM1", "lowercase"),
    ("x" * 64, "1 to 63"),
    ("", "not a valid DNS label"),
])
def test_hostname_refuses_fqdns_and_invalid_labels(name: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        makevm.hostname_arg(name)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "two"])
def test_positive_int_refuses_non_positive_and_non_integers(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        makevm.positive_int(value)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_positive_float_refuses_non_positive_and_non_numbers(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        makevm.positive_float(value)


def test_parser_leaves_unset_sizes_out_and_refuses_zero() -> None:
    args = parse("--cluster", "lab", "--memory", "1.5", "vm1")
    assert (args.memory, args.hostname, args.group) == (1.5, "vm1", None)
    assert "vcpus" not in vars(args) and "disk" not in vars(args)
    with pytest.raises(SystemExit):
        parse("--cluster", "lab", "--vcpus", "0", "vm1")


def test_spec_takes_the_cluster_defaults(settings: clusters.ClusterSettings) -> None:
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "vm1"), settings)
    assert (spec.fqdn, spec.vcpus, spec.memory, spec.disk) == ("vm1.lab.example", 1, 1024, 1024)
    assert (spec.disk_template, spec.os_type, spec.install, spec.skip_v6) == ("file", "noop", True, False)


def test_spec_converts_gb_to_mib_and_os_none_skips_the_install(settings: clusters.ClusterSettings) -> None:
    args = parse("--cluster", "lab", "--group", "A", "--memory", "1.5", "--disk", "20", "--vcpus", "3",
                 "--os", "none", "vm1")
    spec = makevm.VMSpec.from_args(args, settings)
    assert (spec.memory, spec.disk, spec.vcpus) == (1536, 20480, 3)
    assert (spec.os_type, spec.install) == ("noop", False)
    assert spec.planned_instance("aa:00:00:12:34:56")["admin_state"] == "down"


def test_spec_skips_ipv6_when_the_group_has_no_v6_prefix(settings: clusters.ClusterSettings) -> None:
    assert makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "B", "vm1"), settings).skip_v6


@pytest.mark.parametrize(("argv", "message"), [
    (("--cluster", "lab", "--group", "A", "--network", "public", "vm1"),
     r"group A: unknown network 'public' \(configured: lab, private, storage\)"),
    (("--cluster", "lab", "--group", "B", "--network", "private", "vm1"),
     r"group B: unknown network 'private' \(configured: lab\)"),
    (("--cluster", "lab", "vm1"), "several node groups"),
])
def test_spec_refuses_an_unconfigured_network_or_a_missing_group(settings: clusters.ClusterSettings,
                                                                 argv: tuple[str, ...], message: str) -> None:
    with pytest.raises((ValueError, ConfigError), match=message):
        makevm.VMSpec.from_args(parse(*argv), settings)


def test_network_picks_the_nic_link_and_prefixes_of_one_of_the_group_networks(
        settings: clusters.ClusterSettings) -> None:
    default = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "vm1"), settings)
    assert (default.network.name, default.network.nic_link) == ("lab", "gnt-br0")
    assert (default.network.prefixes_v4, default.network.prefixes_v6) == (("198.18.16.0/24",), ("2001:2:0:a::/64",))
    private = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "--network", "private", "vm1"),
                                      settings)
    assert (private.network.name, private.network.prefixes_v4, private.skip_v6) == (
        "private", ("198.18.18.0/24",), True), "no IPv6 prefix on that network: no IPv6 address"
    assert private.create_params("aa:00:00:12:34:56")["nics"] == [{"mac": "aa:00:00:12:34:56", "link": "gnt-br1"}]
    storage = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "--network", "storage", "vm1"),
                                      settings)
    assert storage.create_params("aa:00:00:12:34:56")["nics"] == [{"mac": "aa:00:00:12:34:56", "link": "gnt-br0"}], "the group's nic_link unless the network sets one"
    assert not storage.skip_v6
    assert settings.groups["A"].all_prefixes == ("198.18.16.0/24", "2001:2:0:a::/64", "198.18.18.0/24",
                                                 "198.18.19.0/24", "2001:2:0:1b::/64")


def test_a_network_named_as_the_default_one_is_refused_naming_the_key() -> None:
    cluster = {**LAB_CLUSTER, "groups": {"A": {"prefixes": ["198.18.16.0/24"],
                                              "networks": {"lab": {"prefixes": ["198.18.18.0/24"]}}}}}
    with pytest.raises(ConfigError, match=r"key 'ganeti.clusters.lab.groups.A.networks.lab': network lab is the "
                       "group's default network"):
        clusters.load(Section({"ganeti": {"clusters": {"lab": cluster}}}, "", "test"), "lab")


def test_create_params_make_the_body_ganeti_expects(settings: clusters.ClusterSettings) -> None:
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "--os", "none", "vm1"), settings)
    body = instance_create_body(spec.fqdn, **spec.create_params("aa:00:00:12:34:56", iallocator="hail", group_name="A"))
    assert body["nics"] == [{"mac": "aa:00:00:12:34:56", "link": "gnt-br0"}] and body["disks"] == [{"size": 1024}]
    assert (body["iallocator"], body["group_name"], body["no_install"]) == ("hail", "A", True)
    assert (body["ip_check"], body["name_check"]) == (False, False)
    assert "pnode" not in body and "start" not in body
    placed = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "B", "vm1"), settings)
    body = instance_create_body(placed.fqdn, **placed.create_params("aa:00:00:12:34:56", pnode="node3.lab.example"))
    assert body["nics"] == [{"mac": "aa:00:00:12:34:56"}] and body["pnode"] == "node3.lab.example" and "no_install" not in body


def test_policy_accepts_a_vm_inside_the_recorded_policy(settings: clusters.ClusterSettings,
                                                       ipolicy: dict[str, Any]) -> None:
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "vm1"), settings)
    assert makevm.policy_problems(ipolicy, spec) == []


@pytest.mark.parametrize(("argv", "problem"), [
    (("--memory", "40",), "memory 40960 MiB is outside [128, 32768] MiB"),
    (("--disk", "2000",), "disk 2048000 MiB is outside [1024, 1048576] MiB"),
    (("--vcpus", "9",), "vCPUs 9 is outside [1, 8]"),
    (("--disk-template", "plain"), "disk template plain is not allowed by the group's policy (allowed: "),
])
def test_policy_names_what_is_outside(settings: clusters.ClusterSettings, ipolicy: dict[str, Any],
                                      argv: tuple[str, ...], problem: str) -> None:
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", *argv, "vm1"), settings)
    problems = makevm.policy_problems(ipolicy, spec)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_policy_with_several_ranges_accepts_a_vm_inside_any(settings: clusters.ClusterSettings,
                                                           ipolicy: dict[str, Any]) -> None:
    big = json.loads(json.dumps(ipolicy["minmax"][0]))
    big["min"]["memory-size"], big["max"]["memory-size"] = 32768, 65536
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "--memory", "40", "vm1"), settings)
    assert makevm.policy_problems({**ipolicy, "minmax": [*ipolicy["minmax"], big]}, spec) == []


@pytest.mark.parametrize(("message", "expected"), [
    (HAIL_NO_MEMORY, "memory on 2 nodes"),
    (HAIL_NO_CPU, "vCPUs (vcpu-ratio) on 2 nodes"),
    ("failure reasons: FailMem: 1, FailDisk: 0, FailN1: 3", "memory on 1 node, N+1 redundancy on 3 nodes"),
    ("Instance allocation to group A violates policy", ""),
])
def test_shortage_names_the_short_resource(message: str, expected: str) -> None:
    assert makevm.shortage(message) == expected


def test_plan_renders_node_ips_netbox_objects_and_dns(settings: clusters.ClusterSettings,
                                                      recorded_dir: Path) -> None:
    spec = makevm.VMSpec.from_args(parse("--cluster", "lab", "--group", "A", "--vcpus", "2", "vm1"), settings)
    recorded = recorded_dir / "netbox" / "v4.7.3"
    cluster = json.loads((recorded / "clusters_by_id.json").read_text())["results"][0]
    prefix_v4 = json.loads((recorded / "prefixes_by_prefix.json").read_text())["results"][0]
    prefix_v6 = {**prefix_v4, "id": 2, "prefix": "2001:2:0:a::/64"}
    addresses = ["198.18.0.7/24", "2001:2:0:a::7/64"]
    zones = Zones(["lab.example", "0.18.198.in-addr.arpa", "0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa"])
    diff = compute(build([(spec.fqdn, address) for address in addresses], zones, 300).records, {}, zones)
    plan = makevm.Plan(spec, makevm.Placement(["node2.lab.example"], "hail", job_id=7, mac="aa:00:00:12:34:56"),
                       makevm.NetBoxPlan(cluster, [prefix_v4, prefix_v6], addresses), diff)
    text = plan.render()
    assert "create on node2.lab.example (chosen by hail): 2 vCPU, 1.0 GiB memory, 1.0 GiB disk (file)" in text
    assert "OS noop installed and started, NIC link gnt-br0" in text
    assert f"interface eth0 with MAC {plan.placement.mac}; the IPs on it, primary" in text
    assert "allocate 198.18.0.7/24 (from 198.18.0.0/24), 2001:2:0:a::7/64 (from 2001:2:0:a::/64)" in text
    assert f"VM vm1.lab.example in cluster {cluster['name']}: status active, vcpus 2, memory 1024 MB" in text
    assert "+ vm1.lab.example. 300 A 198.18.0.7" in text and "+ vm1.lab.example. 300 AAAA 2001:2:0:a::7" in text
    assert "+ 7.0.18.198.in-addr.arpa. 300 PTR vm1.lab.example." in text
    assert len([line for line in text.splitlines() if " PTR " in line]) == 2


def test_precheck_failure_lists_every_problem_of_the_checks_made_together() -> None:
    group = ExceptionGroup("checks", [makevm.NoCapacityError("short of memory on 2 nodes in group A"),
                                      makevm.PrecheckError("  - DNS: vm1.lab.example already has A 198.18.0.7")])
    error = makevm.precheck_failure("vm1.lab.example", group)
    assert type(error) is makevm.PrecheckError
    assert str(error).splitlines() == [
        "  - Ganeti: vm1.lab.example does not fit: short of memory on 2 nodes in group A",
        "  - DNS: vm1.lab.example already has A 198.18.0.7"]


def test_precheck_failure_keeps_a_lone_capacity_verdict_and_passes_on_a_system_failure() -> None:
    capacity = makevm.NoCapacityError("short of memory on 2 nodes in group A")
    assert makevm.precheck_failure("vm1", ExceptionGroup("checks", [capacity])) is capacity
    unreachable = ConnectionError("NetBox unreachable")
    assert makevm.precheck_failure("vm1", ExceptionGroup("checks", [capacity, unreachable])) is unreachable


@pytest.mark.parametrize("info", [{}, {"mac_prefix": "aa:00"}, {"mac_prefix": None}])
def test_a_mac_prefix_ganeti_does_not_give_usably_is_a_precheck_failure(info: dict[str, Any]) -> None:
    with pytest.raises(makevm.PrecheckError, match=r"Ganeti: cluster mac_prefix '.*' is not three hex octets"):
        makevm.new_mac(info)
    assert makevm.new_mac({"mac_prefix": "aa:00:00"}).startswith("aa:00:00:")
