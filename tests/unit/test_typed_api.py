"""A cookbook tree outside the repository is type-checked against the library (mypy --strict).

The context's clients, the configuration getters and the Ganeti read models are typed, so a cookbook's
mistakes are found before it runs: the same cookbook with ``ctx: Any`` clients and dict reads passed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''\
"""Report where a VM runs"""
from __future__ import annotations

import argparse

from libcluster.context import Context
from libcluster.ganeti import Instance, Node


def nodes_of(ctx: Context, cluster: str, fqdn: str) -> list[Node]:
    """The nodes of the instance."""
    ganeti = ctx.ganeti(cluster)
    instance: Instance = ganeti.instance(fqdn)
    return [ganeti.node(name) for name in instance.nodes]


def run(args: argparse.Namespace, ctx: Context) -> int:
    """0 when every node of the VM is online and has room for it."""
    limit: int = ctx.config.section("team").int("min_free_mib", 1024)
    ca_file: str | None = ctx.config.section("team").str("ca_file", None)
    free = [node.memory_free or 0 for node in nodes_of(ctx, args.cluster, args.fqdn) if not node.offline]
    vms = ctx.netbox().objects("vm", name=args.fqdn)
    return 0 if free and min(free) >= limit and vms and ca_file is None else 1
'''

BAD = '''\
"""The same mistakes a cookbook made with Any clients"""
from __future__ import annotations

import argparse

from libcluster.context import Context


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Typos and wrong types, each on its own line."""
    instance = ctx.ganeti(args.cluster).instance(args.fqdn)
    node: str = instance.pnode_name
    count: str = len(ctx.ganeti(args.cluster).node(node).primary_instances)
    limit: str = ctx.config.section("team").int("min_free_mib")
    ctx.netbox().objcts("vm")
    ctx.dns().apply("not a diff")
    return 0 if node and count and limit else 1
'''

CONFIG = """\
[mypy]
strict = True
explicit_package_bases = True

# As for an installed package: the library's own findings are not the tree's.
[mypy-libcluster.*]
ignore_errors = True

[mypy-irc.*,jaraco.*,pynetbox.*,cumin.*,ClusterShell.*,etcd3gw.*]
ignore_missing_imports = True
"""


def test_a_cookbook_tree_is_type_checked_against_the_library(tmp_path: Path) -> None:
    tree = tmp_path / "cookbooks" / "team"
    tree.mkdir(parents=True)
    (tree / "where-vm.py").write_text(GOOD)
    (tree / "bad-vm.py").write_text(BAD)
    (tmp_path / "mypy.ini").write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / "cache"),
         "cookbooks/team/where-vm.py", "cookbooks/team/bad-vm.py"],
        cwd=tmp_path, env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=300, check=False)
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert not [line for line in errors if "where-vm.py" in line], result.stdout
    found = {int(match[1]): match[2] for line in errors if (match := re.search(r"bad-vm\.py:(\d+): error: (.*)", line))}
    lines = textwrap.dedent(BAD).splitlines()
    wanted = {number: lines[number - 1].strip() for number in range(12, 17)}
    assert set(found) == set(wanted), (wanted, result.stdout)
    assert '"Instance" has no attribute "pnode_name"' in found[12]
    assert 'expression has type "int"' in found[13]
    assert 'expression has type "int"' in found[14]
    assert '"NetBox" has no attribute "objcts"' in found[15]
    assert '"apply" of "DNS" has incompatible type "str"' in found[16]
    assert result.returncode == 1
