"""Report what fits where: free and allocated capacity of every node group of Ganeti clusters.

Read-only, takes no lock and logs no START/END: it prints the report and exits 0.

For each cluster given (queried concurrently, three RAPI reads each) one row per node group and a
TOTAL row:
  Nodes, Inst     nodes and primary instances of the group
  Mem free        free memory of the usable nodes (not offline or drained), total and average per node
  Disk free       free disk, total and average per node
  vCPU/core       vCPUs allocated to instances / physical cores, the ratio, and ipolicy's vcpu-ratio limit
  Mem alloc       instance memory (maxmem) / the group's total memory
  N+1             yes if the running instances of any one node could restart on the others
  Largest VM      the biggest memory and disk a new VM could get now (best node, within ipolicy)

--format json and csv print the same rows with sizes in MiB, for scripts.

Usage:
  cookbook sre.ganeti.resource-report lab
  cookbook sre.ganeti.resource-report --format csv prod1 prod2 > capacity.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from tabulate import tabulate

from libcluster import capacity, clusters
from libcluster.capacity import GroupCapacity, format_mib
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookInitSuccess, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster

logger = logging.getLogger(__name__)

FORMATS = ("table", "json", "csv")

TABLE_HEADERS = ("Cluster", "Group", "Nodes", "Inst", "Mem free (per node)", "Disk free (per node)", "vCPU/core",
                 "Mem alloc", "N+1", "Largest VM mem / disk")


def collect(cluster: GanetiCluster) -> list[GroupCapacity]:
    """Per-group rows and the totals row of one cluster, from its bulk RAPI reads."""
    groups = capacity.group_capacity(cluster.name, cluster.nodes(), cluster.groups(), cluster.instances())
    return [*groups, capacity.cluster_totals(cluster.name, groups)]


def _ratio(cap: GroupCapacity) -> str:
    limit = f" (max {cap.vcpu_ratio_limit:g})" if cap.vcpu_ratio_limit is not None else ""
    return f"{cap.vcpus_allocated}/{cap.cores} {cap.vcpu_ratio:.2f}{limit}"


def _survives(cap: GroupCapacity) -> str:
    if cap.survives_node_loss:
        return "yes"
    if cap.node_loss_failures:
        return f"NO (losing {', '.join(sorted(cap.node_loss_failures))})"
    return "NO (fewer than 2 usable nodes)"


def table_row(cap: GroupCapacity) -> list[str | int]:
    """One table row with readable sizes."""
    return [
        cap.cluster, cap.group, cap.nodes, cap.instances,
        f"{format_mib(cap.memory_free)} ({format_mib(cap.memory_free_avg)})",
        f"{format_mib(cap.disk_free)} ({format_mib(cap.disk_free_avg)})",
        _ratio(cap), f"{format_mib(cap.memory_allocated)} / {format_mib(cap.memory_total)} ({cap.memory_ratio:.0%})",
        _survives(cap), f"{format_mib(cap.largest_vm_memory)} / {format_mib(cap.largest_vm_disk)}",
    ]


def render(rows: list[GroupCapacity], fmt: str) -> str:
    """The report in one of FORMATS."""
    if fmt == "json":
        return json.dumps([cap.as_dict() for cap in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        dicts = [cap.as_dict() for cap in rows]
        writer = csv.DictWriter(out, fieldnames=list(dicts[0]) if dicts else [], lineterminator="\n")
        writer.writeheader()
        for row in dicts:
            writer.writerow({**row, "node_loss_failures": ";".join(row["node_loss_failures"])})
        return out.getvalue().rstrip("\n")
    return tabulate([table_row(cap) for cap in rows], headers=TABLE_HEADERS, tablefmt="simple")


class ResourceReport(CookbookBase):
    """Report free and allocated capacity, N+1 and the largest VM that fits, per node group."""

    def argument_parser(self) -> argparse.ArgumentParser:
        """--format and one or more cluster names."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
        parser.add_argument("clusters", nargs="+", metavar="CLUSTER",
                            help="cluster name as configured under ganeti.clusters")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Query every cluster at once, print the report, and stop here (CookbookInitSuccess).

        A cluster that cannot be read is named in an error after the others are printed.
        """
        names = list(dict.fromkeys(args.clusters))
        for name in names:
            clusters.load(self.ctx.config, name)  # unknown names fail before any request
        targets = [self.ctx.ganeti(name) for name in names]
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            futures = [pool.submit(collect, cluster) for cluster in targets]
        rows: list[GroupCapacity] = []
        failed: list[str] = []
        for name, future in zip(names, futures, strict=True):
            try:
                rows.extend(future.result())
            except LibclusterError as exc:
                failed.append(f"{name}: {exc}")
        if rows:
            print(render(rows, args.format), flush=True)
        if failed:
            raise LibclusterError("cannot read cluster(s): " + "; ".join(failed))
        raise CookbookInitSuccess()
