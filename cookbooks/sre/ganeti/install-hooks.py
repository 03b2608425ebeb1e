"""Install the Ganeti hooks that make NetBox and DNS follow hand-made instance changes, on a cluster's nodes.

Steps:
  1. Take the cluster's nodes from the RAPI (offline nodes are skipped and named), or the --node given.
  2. On each node over SSH, compare /etc/ganeti/hooks/cookbook-event (the hook script of this
     repository's hooks/), its cookbook-event.conf (0600: the cluster's name, etcd as nodes reach it:
     hooks.node_etcd_url and the nodes' etcd user hooks.node_etcd_user/password, the event prefix
     and TTL, log and spool paths), cookbook-event-ca.crt (0600: hooks.node_etcd_ca_file, the CA of
     etcd's certificate, when set), the cron.d entry hooks.cron_file (/etc/cron.d/cookbook-event:
     every minute `cookbook-event --flush` sends what the node spooled, so a former master that runs
     no more hooks still sends it) and the 50-cookbook-event links in the post-phase directories of
     instance add, remove, rename, modify, migrate, failover, start, stop and disk grow. Files are
     compared by sha256 and mode: only their digests are on the command line.
  3. Write only what differs, and print per node what changed: a second run changes nothing. A file
     is sent on ssh's stdin (ssh with the cumin configuration's options) and written atomically, root
     only until its mode is set: no file content, so no password, is on a command line here or on a
     node, in logs or in the audit record (the settings file's digest is masked too). With -d only
     the comparison runs and the table shows what would change.
--remove takes the links, the script, its settings, the CA and the cron entry away instead.

The hooks record events in etcd; `cookbook-hooks-agent` acts on them (see libcluster/hooks).
addnode runs this cookbook for a new node with `--cluster C --node FQDN`.

Usage:
  cookbook sre.ganeti.install-hooks --cluster prod1
  cookbook sre.ganeti.install-hooks --cluster prod1 --node ganeti1005.example.org
  cookbook sre.ganeti.install-hooks --cluster prod1 --remove
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tabulate import tabulate

from libcluster.arguments import add_location_args, cluster_settings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.hooks import install
from libcluster.hooks.events import HookSettings
from libcluster.remote import HostStatus

logger = logging.getLogger(__name__)

HOOK_SCRIPT = Path(__file__).resolve().parents[3] / "hooks" / install.SCRIPT_NAME
"""The hook script, in the hooks/ directory of the checkout holding this cookbook."""

EXIT_NODES_FAILED = 1
"""Some node could not be reached or the install failed there (the others are done)."""
SEND_WORKERS = 16
"""Files sent over ssh at the same time (cumin's fanout of the lab and a usual default)."""
SEND_TIMEOUT = 60
"""Seconds for one file to be written on a node."""


def _summary(paths: list[str], hooks_dir: str) -> str:
    """Changed paths in short: file names (full paths outside hooks_dir), and how many post-phase links."""
    links = sum(path.endswith("/" + install.LINK_NAME) for path in paths)
    files = [Path(path).name if path.startswith(hooks_dir.rstrip("/") + "/") else path for path in paths
             if not path.endswith("/" + install.LINK_NAME)]
    return ", ".join(files + ([f"{links} hook link(s)"] if links else []))


class InstallHooks(CookbookBase):
    """Install the Ganeti hooks (instance changes -> events for the hooks agent) on every node."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, and --node (repeatable) to install on some nodes only."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--node", action="append", metavar="FQDN",
                            help="install on this node only (repeatable; default: every node of the cluster)")
        parser.add_argument("--remove", action="store_true", help="remove the hooks instead of installing them")
        return parser

    def get_runner(self, args: argparse.Namespace) -> InstallHooksRunner:
        """Check the cluster, the hooks settings and that the hook script is there."""
        cluster_settings(self.ctx.config, args)
        if not HOOK_SCRIPT.is_file():
            raise FileNotFoundError(f"hook script {HOOK_SCRIPT} not found")
        settings = HookSettings.from_config(self.ctx.config)
        ca_file = settings.node_etcd.ca_file
        if ca_file and not args.remove and not Path(ca_file).is_file():
            raise FileNotFoundError(f"hooks.node_etcd_ca_file {ca_file} not found")
        return InstallHooksRunner(self.ctx, args, settings)


class InstallHooksRunner(CookbookRunnerBase):
    """Compares and installs on the nodes, then reports per node."""

    def __init__(self, ctx: Context, args: argparse.Namespace, settings: HookSettings) -> None:
        """Keep the context, the arguments and the hooks settings."""
        self.ctx = ctx
        self.args = args
        self.settings = settings

    @property
    def runtime_description(self) -> str:
        """Which cluster (and nodes), and whether removing."""
        nodes = f" nodes {', '.join(self.args.node)} of" if self.args.node else ""
        return f"{'removing ' if self.args.remove else ''}on{nodes} cluster {self.args.cluster}"

    @property
    def lock_args(self) -> LockArgs:
        """One install per cluster at a time."""
        return LockArgs(suffix=self.args.cluster, concurrency=1, ttl=None)

    def _nodes(self) -> list[str]:
        if self.args.node:
            return list(dict.fromkeys(self.args.node))
        nodes = self.ctx.ganeti(self.args.cluster).nodes()
        offline = sorted(node.name for node in nodes if node.offline)
        if offline:
            logger.warning("Skipping offline node(s): %s (run again with --node once they are back)",
                           ", ".join(offline))
        return sorted(node.name for node in nodes if not node.offline)

    def run(self) -> int:
        """Install (or, in dry-run, check) on every node; 1 if any node failed."""
        nodes = self._nodes()
        remote = self.ctx.remote()
        if self.args.remove:
            result = remote.hosts(nodes).run_sync(install.removal(self.settings, check=self.ctx.dry_run),
                                                  is_safe=self.ctx.dry_run, timeout=60, success_threshold=0.0)
            outcome = {node: self._changed(result[node]) for node in nodes}
        else:
            outcome = self._install(nodes)
        rows, failed = [], []
        for node in nodes:
            paths, problem = outcome[node]
            if problem:
                failed.append(node)
                rows.append((node, "FAILED", problem))
                continue
            verb = "would change" if self.ctx.dry_run else "changed"
            state = f"{verb} {len(paths)}" if paths else "up to date"
            rows.append((node, state, _summary(paths, self.settings.hooks_dir)))
        logger.info("Hooks on cluster %s:\n%s", self.args.cluster, tabulate(rows, headers=("Node", "Result", "Files")))
        if failed:
            logger.error("Hooks not installed on %s", ", ".join(failed))
            return EXIT_NODES_FAILED
        return 0

    def _install(self, nodes: list[str]) -> dict[str, tuple[list[str], str]]:
        """Per node, the paths changed (or to change) and a problem: compare (digests only), send the files that
        differ on ssh's stdin, then make the links."""
        ca_file = self.settings.node_etcd.ca_file
        wanted = install.files(HOOK_SCRIPT.read_text(encoding="utf-8"),
                               install.render_conf(self.args.cluster, self.settings), self.settings,
                               ca=Path(ca_file).read_text(encoding="utf-8") if ca_file else None)
        remote = self.ctx.remote()
        check = remote.hosts(nodes).run_sync(install.program(wanted, self.settings, check=True), is_safe=True,
                                             timeout=60, success_threshold=0.0)
        outcome = {node: self._changed(check[node]) for node in nodes}
        if self.ctx.dry_run:
            return outcome
        sends = [(node, file) for node, (paths, problem) in outcome.items() if not problem
                 for file in wanted if file.path in paths]
        with ThreadPoolExecutor(max_workers=SEND_WORKERS) as pool:
            sent = list(pool.map(lambda job: self._send(*job), sends))
        for (node, file), problem in zip(sends, sent, strict=True):
            if problem and not outcome[node][1]:
                outcome[node] = (outcome[node][0], f"writing {file.path}: {problem}")
        ready = [node for node in nodes if not outcome[node][1]]
        if ready:
            links = remote.hosts(ready).run_sync(install.program(wanted, self.settings, check=False), is_safe=False,
                                                 timeout=60, success_threshold=0.0)
            for node in ready:
                paths, problem = self._changed(links[node])
                outcome[node] = ([path for path in outcome[node][0] if path not in paths] + paths, problem)
        return outcome

    def _send(self, node: str, file: install.File) -> str:
        """Write file on node from ssh's stdin (never on a command line); "" when done, else what went wrong."""
        self.ctx.changes.record("remote", "file", node, path=file.path, mode=file.mode)
        argv = self.ctx.remote().ssh_command(node, install.write_program(file))
        try:
            done = subprocess.run(argv, input=file.content.encode(), capture_output=True, timeout=SEND_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            return f"no answer within {SEND_TIMEOUT}s"
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        try:
            install.changed(output)
        except ValueError:
            return f"exit code {done.returncode}: {output.strip()[-200:]}"
        return ""

    @staticmethod
    def _changed(host: Any) -> tuple[list[str], str]:
        """The paths a program run on one host reported, and a problem ("" when it ran to its end)."""
        try:
            if host.status is not HostStatus.OK:
                raise ValueError(host.output.strip()[-200:])
            return install.changed(host.output), ""
        except ValueError as exc:
            return [], f"{host.describe()}: {exc}"
