"""`cookbook-lab`: bring the lab up, take it down, show its endpoints and credentials; reboot, kill or revive a node."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from types import ModuleType
from typing import Any

from cookbook_lab import cluster, configfile, etcd, ircd, knot, netbox, netns, nodepower, topology
from cookbook_lab.clusterfs import PART, ClusterPaths
from cookbook_lab.common import Lab, LabError, step

PARTS: tuple[ModuleType, ...] = (cluster, knot, etcd, ircd, netbox)
"""Lab parts in start order; each has NAME, up(lab), down(lab), status(lab)."""

PARALLEL_PARTS = (netbox,)
"""Parts started in a thread beside the others (NetBox's first start is CPU bound for minutes)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cookbook-lab",
        description=(
            "Run the ganeti-cookbooks lab on this machine: a Ganeti 3.0 cluster (fake hypervisor, "
            "nodes in network namespaces), NetBox, Knot DNS, etcd and ngircd, all on loopback and "
            f"198.18.0.0/15. Must run as root. State lives in {topology.STATE_DIR}, caches in "
            f"{topology.CACHE_DIR}, per-part logs in {topology.LOG_DIR}."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="install what is missing and start every part (idempotent: repairs what is down)")
    sub.add_parser("down", help="stop and remove every lab process, namespace, mount, bridge and address")
    status = sub.add_parser("status", help="show whether each part is up, with endpoints and credentials")
    status.add_argument("--json", action="store_true", help="print endpoints and credentials as JSON")
    sub.add_parser("config", help="print the path of the generated `cookbook -c` configuration")
    down_node = sub.add_parser("node-down", help="kill a node: its Ganeti daemons, sshd and sessions, link down")
    down_node.add_argument("--at-reboot", action="store_true",
                           help="kill nothing now: the node's next reboot leaves it down (until node-up or up)")
    reboot_node = sub.add_parser("node-reboot", help="run `reboot` inside a node: its daemons and sshd stop, then "
                                 f"start after {nodepower.DOWNTIME:g}s with a new boot id (the host never reboots)")
    up_node = sub.add_parser("node-up", help="bring a dead node back: link up, new boot id, sshd, Ganeti daemons")
    for node_parser in (down_node, reboot_node, up_node):
        node_parser.add_argument("node", choices=[node.short for node in topology.NODES], help="the lab node")
    return parser


def node_power(lab: Lab, command: str, short: str, *, at_reboot: bool = False) -> None:
    """node-down, node-reboot or node-up of one lab node."""
    paths = ClusterPaths.of(lab)
    node = topology.node(short)
    if command == "node-reboot":
        lab.run(PART, netns.node_cmd(paths, node, ["reboot"]))
    elif command == "node-up":
        nodepower.node_up(lab, paths, node)
    elif at_reboot:
        nodepower.stay_down_at_reboot(paths, node)
    else:
        nodepower.node_down(lab, paths, node)


def up(lab: Lab) -> None:
    """Start every part, NetBox in parallel with the rest, then write the cookbook config."""
    errors: list[BaseException] = []

    def start(part: ModuleType) -> None:
        try:
            with step(f"{part.NAME}: up"):
                part.up(lab)
        except BaseException as exc:  # noqa: BLE001 - reported below with the part's name
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(part,), name=part.NAME) for part in PARALLEL_PARTS]
    for thread in threads:
        thread.start()
    for part in PARTS:
        if part not in PARALLEL_PARTS and not errors:
            start(part)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    with step("config: write cookbook configuration"):
        configfile.write(lab, status(lab))


def down(lab: Lab) -> None:
    """Stop every part in reverse order, then remove the runtime state (caches stay)."""
    failures = []
    for part in reversed(PARTS):
        try:
            with step(f"{part.NAME}: down"):
                part.down(lab)
        except LabError as exc:
            failures.append(str(exc))
    if failures:
        raise LabError("; ".join(failures))
    lab.remove_state()


def status(lab: Lab) -> dict[str, Any]:
    """Every endpoint and credential of the lab, and whether each part is up."""
    result: dict[str, Any] = {"config": str(lab.config_file), "domain": topology.DOMAIN}
    for part in PARTS:
        result.update(part.status(lab))
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cookbook-lab`."""
    args = _parser().parse_args(argv)
    lab = Lab()
    started = time.monotonic()
    try:
        if args.command == "up":
            up(lab)
            print(f"lab is up in {time.monotonic() - started:.1f}s; config: {lab.config_file}", file=sys.stderr)
        elif args.command == "down":
            down(lab)
            print(f"lab is down in {time.monotonic() - started:.1f}s", file=sys.stderr)
        elif args.command == "status":
            state = status(lab)
            if args.json:
                print(json.dumps(state, indent=2, sort_keys=True))
            else:
                for key, value in state.items():
                    if isinstance(value, dict) and "up" in value:
                        print(f"{key:8} {'up' if value['up'] else 'DOWN'}")
                return 0 if all(v.get("up", True) for v in state.values() if isinstance(v, dict)) else 1
        elif args.command.startswith("node-"):
            node_power(lab, args.command, args.node, at_reboot=getattr(args, "at_reboot", False))
        else:
            print(lab.config_file)
    except LabError as exc:
        print(f"cookbook-lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
