"""Fakes for the unit tests of cookbooks, importable from any cookbook tree (``from libcluster.testing import ...``).

A cookbook test builds a :class:`FakeCtx` serving fakes of the clients the cookbook reaches through it
(:class:`FakeCluster` with its nodes, instances and jobs, :class:`FakeNetBox`, :class:`FakeRemote`, and the
real DNS client on an in-memory server from :func:`fake_dns`), loads the cookbook file with
:func:`load_cookbook` and calls its ``argument_parser``/``get_runner``/``run`` as the runner does
(:func:`run_runner` also runs the rollback and the undo stack after a failure, as the runner does)::

    from libcluster.testing import FakeCluster, FakeCtx, load_config, load_cookbook

    def test_the_instance_is_shut_down(tmp_path):
        module = load_cookbook(TREE, "team.stop-vm")         # TREE: the folder holding cookbooks/
        cluster = FakeCluster()
        cluster.add_instance("vm1.lab.example")
        ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
        cookbook = module.StopVM(ctx)
        runner = cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", "vm1.lab.example"]))
        assert runner.run() == 0
        assert cluster.instance("vm1.lab.example")["status"] == "ADMIN_down"

Every fake has the methods of the real class it stands for with the same signatures (``REAL``; its test
helpers are listed in ``HELPERS``): :func:`check_fakes` returns what differs, and this package's own unit
test fails on any difference, so the fakes cannot drift from the library. A fake a tree writes itself can
be checked the same way with :func:`libcluster.testing.conformance.problems`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from libcluster import config as config_module
from libcluster.config import Section
from libcluster.cookbook import CookbookRunnerBase
from libcluster.runner import discovery, execute
from libcluster.runner.execute import Outcome
from libcluster.testing import conformance
from libcluster.testing.context import FakeCtx, RecordingLocks
from libcluster.testing.dns import FakeDNSServer, fake_dns
from libcluster.testing.ganeti import (
    FakeCluster,
    FakeCommands,
    FakeJob,
    InterruptedWait,
    interrupt_the_wait_for,
    not_found,
)
from libcluster.testing.netbox import FakeNetBox
from libcluster.testing.remote import FakeHosts, FakeRemote, failed, ok

__all__ = [
    "BASE_CONFIG",
    "FAKES",
    "FakeCluster",
    "FakeCommands",
    "FakeCtx",
    "FakeDNSServer",
    "FakeHosts",
    "FakeJob",
    "FakeNetBox",
    "FakeRemote",
    "InterruptedWait",
    "RecordingLocks",
    "check_fakes",
    "failed",
    "fake_dns",
    "interrupt_the_wait_for",
    "load_config",
    "load_cookbook",
    "not_found",
    "ok",
    "run_runner",
]

FAKES: tuple[tuple[type, type], ...] = tuple(
    (fake, fake.REAL) for fake in (FakeCtx, FakeCluster, FakeCommands, FakeNetBox, FakeRemote, FakeHosts,
                                   FakeDNSServer, FakeJob, RecordingLocks)
)
"""Each fake with the real class it stands for."""

BASE_CONFIG: dict[str, Any] = {
    "remote": {"cumin_config": "/nonexistent/cumin.yaml"},
    "netbox": {"url": "https://netbox.invalid", "token": "nbt_x", "ro_token": "nbt_y"},
    "ganeti": {"clusters": {
        "lab": {
            "rapi_url": "https://198.51.100.10:5080", "rapi_user": "u", "rapi_password": "p",
            "rapi_ro_user": "ro", "rapi_ro_password": "p", "ca_file": "/nonexistent/ca.pem",
            "domain": "lab.example", "netbox_cluster_group": "lab", "verify_ignore": ["ENODESETUP"],
            "vm_capable_check": "test -e /dev/kvm", "bridges": ["br0"], "cert_warning_days": 30,
            "groups": {"A": {"prefixes": ["198.51.100.0/26"]}, "B": {"prefixes": ["198.51.100.64/26"]}},
        },
        "prod": {
            "rapi_url": "https://198.51.100.20:5080", "rapi_user": "u", "rapi_password": "p",
            "rapi_ro_user": "ro", "rapi_ro_password": "p", "domain": "example.org",
            "netbox_cluster_group": "prod-group", "groups": {"A": {"prefixes": ["203.0.113.0/24"]}},
        },
    }},
}
"""A valid configuration: clusters ``lab`` (groups A and B) and ``prod``, NetBox and remote sections."""


def load_config(tmp_path: Path, data: Mapping[str, Any] | None = None, **cluster_overrides: Any) -> Section:
    """data (default BASE_CONFIG) with keys of cluster ``lab`` replaced, written to tmp_path/config.yaml and
    loaded as the runner loads its file."""
    loaded = yaml.safe_load(yaml.safe_dump(dict(data if data is not None else BASE_CONFIG)))
    if cluster_overrides:
        loaded["ganeti"]["clusters"]["lab"].update(cluster_overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(loaded))
    return config_module.load(path)


def load_cookbook(tree: str | Path, name: str) -> ModuleType:
    """Import ``cookbooks.<name>`` (dashes allowed) of the tree at ``tree`` (the folder holding ``cookbooks/``)
    as the runner does; modules of another tree imported before are dropped first."""
    for module in [module for module in sys.modules if module == "cookbooks" or module.startswith("cookbooks.")]:
        del sys.modules[module]
    return discovery.import_cookbook_module([Path(tree)], name)


def run_runner(runner: CookbookRunnerBase, ctx: Any) -> Outcome:
    """Run runner as the cookbook runner does: run(); when it fails or is interrupted, the runner's rollback()
    and then ctx.undo in reverse, then releases what ctx.until_end holds. The outcome holds the exit code (93 when
    something is left behind)."""
    with ctx.until_end:
        return execute._run_runner(runner, ctx)


def check_fakes() -> list[str]:
    """What differs between each fake of this package and the real class it stands for (empty: none)."""
    return conformance.check_all(FAKES)
