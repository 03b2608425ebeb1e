"""A Ganeti cluster's health in one read-only answer, for monitoring (a Nagios-style plugin).

Checks (libcluster.ganeti.health): nodes (offline or drained: WARNING; noded not answering: CRITICAL),
`gnt-cluster verify` (errors CRITICAL, warnings WARNING; the cluster's verify_ignore codes ignored), disks
(verify's DRBD/disk findings, instances whose node is down or offline), N+1 per node group, jobs (queued or
running longer than --stuck-after, failed within --failed-within; Ganeti dry-run checks not counted), the job
queue (drained: CRITICAL), the watcher (paused: WARNING), certificate expiry (renew-crypto --check-only's
check, within the cluster's cert_warning_days).

Never changes anything: no job, no lock held on the cluster, `gnt-cluster verify-disks` is not run (it
activates inactive disks). A dry-run (-d) runs exactly the same reads.
Exit codes (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a check could not run and nothing is critical);
94 unknown cluster.
Output: one line per finding then the status line; --json prints the report as JSON instead; --check-only
prints only the status line.

Usage:
  cookbook sre.ganeti.health --cluster lab
  cookbook sre.ganeti.health --cluster lab --json
"""

from __future__ import annotations

import argparse
import json

from libcluster.arguments import add_location_args, cluster_settings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.ganeti import GanetiCluster, health


class Health(CookbookBase):
    """Check a cluster's health for monitoring (read-only; Nagios exit codes)."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --json, --check-only, the job thresholds."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="print the report as JSON")
        output.add_argument("--check-only", action="store_true", help="print only the status line")
        parser.add_argument("--stuck-after", type=float, default=60.0, metavar="MINUTES",
                            help="a job queued or running longer is reported (default 60)")
        parser.add_argument("--failed-within", type=float, default=60.0, metavar="MINUTES",
                            help="a job failed within this many minutes is reported (default 60; 0: none)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check the cluster name (94 when unknown)."""
        settings = cluster_settings(self.ctx.config, args)
        return HealthRunner(self.ctx, self.ctx.ganeti(settings.name), settings.cert_warning_days, args)


class HealthRunner(CookbookRunnerBase):
    """Run every check and print the report; the exit code is its level."""

    max_concurrency = 100

    def __init__(self, ctx: Context, cluster: GanetiCluster, warning_days: int, args: argparse.Namespace) -> None:
        """Keep the cluster and the options."""
        self.ctx, self.cluster, self.warning_days, self.args = ctx, cluster, warning_days, args

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines."""
        return f"health of cluster {self.cluster.name}"

    def run(self) -> int:
        """Collect, print, exit with the level."""
        ca_file = self.ctx.config.section("ganeti").section("clusters").section(self.cluster.name).str("ca_file",
                                                                                                      None)
        report = health.collect(self.cluster, self.ctx.remote(), ca_file=ca_file, warning_days=self.warning_days,
                                stuck_after=self.args.stuck_after * 60, failed_within=self.args.failed_within * 60)
        if self.args.json:
            print(json.dumps(report.as_dict(), indent=2), flush=True)
        else:
            if not self.args.check_only:
                for finding in report.findings:
                    print(f"{finding.level.name:8} {finding.check}: {finding.message}")
            print(report.summary(), flush=True)
        return int(report.level)
