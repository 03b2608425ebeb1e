"""Renew a Ganeti cluster's certificates and keys, checking before and after what clients will see.

Steps:
  1. Report every certificate's expiry: the cluster certificate (server.pem of the master, the same
     on every node), each node's own certificate (client.pem), RAPI (rapi.pem, and RAPI as a TLS
     client verifying against the configured ca_file sees it) and SPICE (when present); and the
     fingerprint of each node's root SSH key.
     --check-only stops here: exit 0 when all are fine, non-zero (94) when one expires within the
     cluster's cert_warning_days, is missing, or RAPI does not verify (for monitoring).
  2. Refuse to go on while Ganeti jobs are queued, waiting or running (daemons are restarted).
     With --rapi-certificate FILE (a path on the master holding key and certificate), refuse a
     certificate that a client verifying against ca_file would reject.
  3. Confirm, then run `gnt-cluster renew-crypto -f` on the master with the chosen parts, under a
     per-cluster exclusive lock. Ganeti 3.0.2 quirks handled: a RAPI certificate file is only
     installed together with --new-confd-hmac-key; SSH keys need --no-ssh-key-check. A new cluster
     certificate renews the node certificates too and restarts the daemons of every node (about 45s
     on a small cluster).
  4. Wait until RAPI answers TLS again, run `gnt-cluster verify` (which also checks SSH between nodes).
  5. Report the expiries again; every renewed certificate and SSH key must have changed, and our own
     RAPI client must still verify TLS. --new-rapi-certificate makes Ganeti generate a self-signed
     certificate that no verifying client accepts: the renewal is completed and checked over SSH,
     then the run says so loudly and exits 1 (install a CA-signed one with --rapi-certificate).
A failure or an interrupt (Ctrl-C, chat `cancel`) while `gnt-cluster renew-crypto` runs cannot be
undone: the command may go on, or stop half-way with some nodes' daemons stopped. The run then
exits 93 and says what to check and run (daemons, verify, --check-only, a new run for the rest).

When RAPI does not answer or its certificate does not verify (after --new-rapi-certificate, or an
expired certificate), give --master NODE: the master, the node list and the job queue are then
read over SSH on that node, and RAPI is only checked, never needed.

Usage:
  cookbook sre.ganeti.renew-crypto --cluster prod1 --check-only
  cookbook sre.ganeti.renew-crypto --cluster prod1 --cluster-certificate
  cookbook sre.ganeti.renew-crypto --cluster prod1 --rapi-certificate /root/rapi-2027.pem
  cookbook sre.ganeti.renew-crypto --cluster prod1 --master node01.example.org --rapi-certificate /root/rapi.pem
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime

from tabulate import tabulate

from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import (
    EXIT_ROLLBACK_FAILED,
    ArgparseFormatter,
    CookbookBase,
    CookbookInitSuccess,
    CookbookRunnerBase,
    LockArgs,
)
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, RapiConnectionError, certificates
from libcluster.ganeti.certificates import Cert
from libcluster.ganeti.commands import CommandResult, GntCommands, VerifyResult
from libcluster.ganeti.waits import verify_cluster
from libcluster.remote import HostStatus

logger = logging.getLogger(__name__)

ACTIVE_JOB_STATUSES = ("queued", "waiting", "running", "canceling")
RAPI_WAIT = 300.0
"""Seconds RAPI gets to answer TLS again after the renewal."""
POLL_INTERVAL = 3.0


def chosen_parts(args: argparse.Namespace) -> list[str]:
    """What the run renews, in words, from the flags."""
    parts = {
        "cluster certificate (and node certificates)": args.cluster_certificate,
        "node certificates": args.node_certificates and not args.cluster_certificate,
        f"RAPI certificate from {args.rapi_certificate}": bool(args.rapi_certificate),
        "RAPI certificate (new self-signed)": args.new_rapi_certificate,
        "SPICE certificate": args.spice_certificate,
        "SSH keys": args.ssh_keys,
    }
    return [part for part, wanted in parts.items() if wanted]


def render(certs: list[Cert], now: datetime, warning_days: int) -> str:
    """The certificates as a table with days left and a status column."""
    rows = []
    for cert in certs:
        days = cert.days_left(now)
        rows.append([cert.name, cert.where, cert.not_after.strftime("%Y-%m-%d %H:%M") if cert.not_after else "-",
                     f"{days:.0f}" if days is not None else "-", certificates.status(cert, now, warning_days)])
    return tabulate(rows, headers=("Certificate", "Where", "Expires (UTC)", "Days left", "Status"))


def members(cluster: GanetiCluster, master: str | None) -> tuple[str, list[str]]:
    """The master and the online nodes: from the RAPI, or over SSH on `master` when given (checked to be it)."""
    if master is None:
        try:
            return cluster.master(), sorted(node.name for node in cluster.nodes() if not node.offline)
        except RapiConnectionError as exc:
            raise LibclusterError(f"{exc}\nTo work without RAPI, name the master node: --master NODE") from None
    commands = cluster.commands.on(master)
    current = commands.run(["gnt-cluster", "getmaster"], is_safe=True).output.strip()
    if current != master:
        raise LibclusterError(f"--master {master}: the master of cluster {cluster.name} is {current or 'unknown'}")
    return master, sorted(name for name, offline in _listing(commands, ["gnt-node", "list"], "name,offline")
                          if offline != "Y")


def active_jobs(cluster: GanetiCluster, master: str | None) -> list[str]:
    """Ids of the jobs queued, waiting, running or canceling: from the RAPI, or over SSH on `master` when given."""
    if master is None:
        return [str(job["id"]) for job in cluster.jobs(bulk=True) if job.get("status") in ACTIVE_JOB_STATUSES]
    return [job for job, state in _listing(cluster.commands.on(master), ["gnt-job", "list"], "id,status")
            if state in ACTIVE_JOB_STATUSES]


def _listing(commands: GntCommands, argv: list[str], fields: str) -> list[list[str]]:
    """The rows of a `gnt-* list` command, fields split."""
    output = commands.run([*argv, "--no-headers", "--separator=|", "-o", fields], is_safe=True).output
    return [line.split("|") for line in output.splitlines() if line.strip()]


def rapi_ca_file(ctx: Context, cluster: str) -> str | None:
    """The CA bundle our RAPI client verifies the cluster against (None: the system CAs)."""
    return ctx.config.section("ganeti").section("clusters").section(cluster).str("ca_file", None)


class RenewCrypto(CookbookBase):
    """Report and renew a cluster's certificates and keys (gnt-cluster renew-crypto)."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, the parts to renew, or --check-only."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--cluster-certificate", action="store_true",
                            help="new cluster certificate (implies new node certificates; restarts every daemon)")
        parser.add_argument("--node-certificates", action="store_true", help="new node (client) certificates")
        rapi = parser.add_mutually_exclusive_group()
        rapi.add_argument("--rapi-certificate", metavar="FILE",
                          help="install this RAPI key+certificate PEM (a path on the master)")
        rapi.add_argument("--new-rapi-certificate", action="store_true",
                          help="let Ganeti generate a self-signed RAPI certificate")
        parser.add_argument("--spice-certificate", action="store_true", help="new SPICE certificate and CA")
        parser.add_argument("--ssh-keys", action="store_true", help="new root SSH keys of the nodes")
        parser.add_argument("--check-only", action="store_true",
                            help="only report; exit non-zero if a certificate needs attention")
        parser.add_argument("--master", metavar="NODE", type=fqdn_argument,
                            help="the master node, when RAPI does not answer or verify: read the nodes and jobs "
                                 "over SSH on it")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Validate the flags; --check-only reports and stops here, a renewal checks a RAPI file first."""
        settings = cluster_settings(self.ctx.config, args)
        parts = chosen_parts(args)
        if args.check_only and parts:
            raise ValueError("--check-only renews nothing: drop the renewal options")
        if not args.check_only and not parts:
            raise ValueError("nothing to renew: choose parts (see --help) or use --check-only")
        cluster = self.ctx.ganeti(args.cluster)
        ca_file = rapi_ca_file(self.ctx, args.cluster)
        master, nodes = members(cluster, args.master)
        if args.check_only:
            self._check_only(cluster, settings, ca_file, master, nodes)
        if args.rapi_certificate:
            self._check_rapi_file(cluster, master, args.rapi_certificate, ca_file)
        return RenewCryptoRunner(self.ctx, cluster, settings, args, parts, ca_file, (master, nodes))

    def _check_only(self, cluster: GanetiCluster, settings: ClusterSettings, ca_file: str | None, master: str,
                    nodes: list[str]) -> None:
        now = datetime.now(UTC)
        certs = certificates.survey(self.ctx.remote(), master, nodes, cluster.rapi.url, ca_file)
        print(render(certs, now, settings.cert_warning_days), flush=True)
        bad = certificates.problems(certs, now, settings.cert_warning_days)
        if bad:
            raise LibclusterError(f"{len(bad)} certificate(s) of cluster {cluster.name} need attention: "
                                  + "; ".join(f"{cert.where}: "
                                              f"{certificates.status(cert, now, settings.cert_warning_days)}"
                                              for cert in bad))
        raise CookbookInitSuccess()

    def _check_rapi_file(self, cluster: GanetiCluster, master: str, path: str, ca_file: str | None) -> None:
        """Refuse a RAPI certificate file that is unreadable on the master or that our client would not verify."""
        result = self.ctx.remote().hosts([master]).run_sync(["openssl", "x509", "-in", path], is_safe=True,
                                                             timeout=30)[master]
        if result.status is not HostStatus.OK or "BEGIN CERTIFICATE" not in result.output:
            raise LibclusterError(f"{master}:{path} holds no readable certificate: {result.output.strip()[-300:]}")
        if ca_file:
            refused = certificates.verify_pem(result.output, ca_file, cluster.rapi.url)
            if refused:
                raise LibclusterError(f"{master}:{path} would not verify for {cluster.rapi.url} against {ca_file} "
                                      f"({refused}): every RAPI client pinning that CA would break")


class RenewCryptoRunner(CookbookRunnerBase):
    """Report, renew on the master, wait for RAPI, verify, report and compare."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, settings: ClusterSettings, args: argparse.Namespace,
                 parts: list[str], ca_file: str | None, members: tuple[str, list[str]]) -> None:
        """Keep the validated options, the master and the online nodes."""
        self.ctx = ctx
        self.master, self.nodes = members
        self.cluster = cluster
        self.settings = settings
        self.args = args
        self.parts = parts
        self.ca_file = ca_file

    @property
    def runtime_description(self) -> str:
        """Cluster and parts."""
        return f"on cluster {self.cluster.name}: {', '.join(self.parts)}"

    @property
    def lock_args(self) -> LockArgs:
        """One renewal per cluster at a time."""
        return LockArgs(suffix=self.cluster.name, concurrency=1, ttl=None)

    def _report(self, when: str) -> list[Cert]:
        certs = certificates.survey(self.ctx.remote(), self.master, self.nodes, self.cluster.rapi.url, self.ca_file)
        print(f"Certificates of cluster {self.cluster.name} {when}:\n"
              f"{render(certs, datetime.now(UTC), self.settings.cert_warning_days)}", flush=True)
        return certs

    def run(self) -> int:
        """The runbook: report, refuse while jobs run, confirm, renew, wait for RAPI, verify, report and compare."""
        before = self._report("before")  # step 1
        if self._jobs_active():  # step 2
            return 1
        self._announce()
        self.ctx.confirm(f"Renew {', '.join(self.parts)} of cluster {self.cluster.name}?")
        commands = self.cluster.commands.on(self.master)  # from here on RAPI may refuse our client
        try:
            result = self._renew(commands)  # step 3
        except (LibclusterError, KeyboardInterrupt) as exc:
            logger.error("%s: %s", type(exc).__name__, exc)
            logger.error("%s", self._unfinished())
            return EXIT_ROLLBACK_FAILED
        if result.skipped:
            logger.info("Nothing renewed (dry-run): the certificates above stay as they are")
            return 0
        self._wait_for_rapi()  # step 4
        verify = verify_cluster(commands, "after the renewal")
        failures = self._check(before, self._report("after"), verify)  # step 5
        for failure in failures:
            logger.error("%s", failure)
        return 1 if failures else 0

    def _jobs_active(self) -> bool:
        """Whether Ganeti jobs are queued or running (renewing restarts the daemons): logged as the reason to stop."""
        active = active_jobs(self.cluster, self.args.master)
        if active:
            logger.error("Jobs %s are queued or running on cluster %s: renewing restarts the daemons; retry when "
                         "they are done", ", ".join(active), self.cluster.name)
        return bool(active)

    def _announce(self) -> None:
        """What the renewal does, and the warning about a self-signed RAPI certificate."""
        if self.args.new_rapi_certificate:
            logger.warning("--new-rapi-certificate makes Ganeti generate a SELF-SIGNED certificate: clients "
                           "verifying RAPI against %s (this one included) will fail; prefer --rapi-certificate FILE",
                           self.ca_file or "the system CAs")
        print(f"Renewing on cluster {self.cluster.name}: {', '.join(self.parts)}.\nGaneti daemons of every node are "
              "restarted: jobs cannot be submitted meanwhile.", flush=True)

    def _renew(self, commands: GntCommands) -> CommandResult:
        """`gnt-cluster renew-crypto` on the master with the chosen parts (skipped in dry-run)."""
        started = time.monotonic()
        result = commands.renew_crypto(
            cluster_certificate=self.args.cluster_certificate,
            node_certificates=self.args.node_certificates,
            rapi_certificate=self.args.rapi_certificate,
            new_rapi_certificate=self.args.new_rapi_certificate,
            spice_certificate=self.args.spice_certificate,
            confd_hmac_key=bool(self.args.rapi_certificate),
            ssh_keys=self.args.ssh_keys,
            ssh_key_check=not self.args.ssh_keys,
        )
        if not result.skipped:
            logger.info("gnt-cluster renew-crypto done in %.0fs:\n%s", time.monotonic() - started,
                        result.output.strip())
        return result

    def _unfinished(self) -> str:
        """What to check and run when gnt-cluster renew-crypto failed or was interrupted: it cannot be undone."""
        return (f"gnt-cluster renew-crypto on {self.master} did not report its end: it may still run there, or have "
                "stopped half-way with the Ganeti daemons of some nodes stopped (Ganeti starts them again only when "
                "the command ends cleanly). On the master: `pgrep -af renew-crypto`; when it is gone, "
                "`/usr/lib/ganeti/daemon-util start-all` on every node (the master last) and `gnt-cluster verify`; "
                f"then `cookbook sre.ganeti.renew-crypto --cluster {self.cluster.name} --check-only` shows what was "
                "renewed, and a new run renews the rest")

    def _check(self, before: list[Cert], after: list[Cert], verify: VerifyResult) -> list[str]:
        """Step 5's failures: certificates not renewed, verify failing, our RAPI client no longer verifying TLS."""
        failures = self._compare(before, after)
        if not verify.ok:
            failures.append(f"gnt-cluster verify failed (exit code {verify.rc})")
        tls = next(cert for cert in after if cert.name == certificates.TLS_NAME)
        if tls.problem:
            failures.append(f"OUR RAPI CLIENT NO LONGER VERIFIES {self.cluster.rapi.url}: {tls.problem}. Every "
                            "client pinning that CA is broken: install a CA-signed certificate with "
                            f"--rapi-certificate FILE")
        return failures

    def _wait_for_rapi(self) -> None:
        """Wait until RAPI completes a TLS handshake again (verified or not: that is checked afterwards)."""
        deadline = time.monotonic() + RAPI_WAIT
        while True:
            seen = certificates.tls_peer(self.cluster.rapi.url, self.ca_file)
            if not seen.problem.startswith("unreachable"):
                return
            if time.monotonic() >= deadline:
                raise LibclusterError(f"RAPI of cluster {self.cluster.name} is not back {RAPI_WAIT:g}s after the "
                                      f"renewal: {seen.problem}")
            time.sleep(POLL_INTERVAL)

    def _compare(self, before: list[Cert], after: list[Cert]) -> list[str]:
        """A failure line for every renewed certificate or key whose fingerprint did not change."""
        renewed = set()
        if self.args.cluster_certificate:
            renewed |= {"cluster certificate", "node certificate"}
        if self.args.node_certificates:
            renewed.add("node certificate")
        if self.args.rapi_certificate or self.args.new_rapi_certificate:
            renewed |= {"RAPI certificate", certificates.TLS_NAME}
        if self.args.spice_certificate:
            renewed.add("SPICE certificate")
        if self.args.ssh_keys:
            renewed.add(certificates.SSH_KEY_NAME)
        old = {(cert.name, cert.where): cert.fingerprint for cert in before}
        return [f"{cert.name} at {cert.where} was not renewed (same fingerprint as before)"
                for cert in after if cert.name in renewed and cert.fingerprint
                and old.get((cert.name, cert.where)) == cert.fingerprint]
