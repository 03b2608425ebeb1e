"""Command-line arguments every Ganeti cookbook shares: --cluster/--group and the FQDN type.

Library API for any cookbook tree: ``add_location_args(parser)`` in ``argument_parser()``, then
``cluster_settings(ctx.config, args)`` at the start of ``get_runner()``, so a typo in a cluster or
group name fails before anything is read or changed; ``type=fqdn_argument`` for host and instance names.
"""

from __future__ import annotations

import argparse

from libcluster import clusters
from libcluster.clusters import ClusterSettings
from libcluster.config import Section
from libcluster.remote_results import InvalidHostError, validate_host


def fqdn_argument(value: str) -> str:
    """Argparse type of a host or instance FQDN: a plain DNS name (no shell metacharacters, no leading dash)."""
    try:
        return validate_host(value)
    except InvalidHostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_location_args(parser: argparse.ArgumentParser, *, group: bool = True, group_required: bool = False) -> None:
    """Add --cluster (a name under ganeti.clusters of the config) and, if asked, --group."""
    parser.add_argument("--cluster", required=True, help="Ganeti cluster, as named under ganeti.clusters in the config")
    if group:
        parser.add_argument(
            "--group", required=group_required,
            help="node group of the cluster (default: the only group configured for the cluster)",
        )


def cluster_settings(config: Section, args: argparse.Namespace) -> ClusterSettings:
    """The settings of --cluster; with --group, also checks the group is configured (ConfigError otherwise)."""
    settings = clusters.load(config, args.cluster)
    if getattr(args, "group", None):
        settings.group(args.group)
    return settings


def default_group(settings: ClusterSettings, group: str | None) -> str:
    """The group asked for, or the only configured group; several configured and none asked is an error."""
    if group:
        return settings.group(group).name
    if len(settings.groups) == 1:
        return next(iter(settings.groups))
    known = ", ".join(sorted(settings.groups)) or "none"
    raise ValueError(f"cluster {settings.name} has several node groups ({known}): pass --group")


def positive_int(value: str) -> int:
    """Argparse type: an integer > 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than zero")
    return number


def positive_float(value: str) -> float:
    """Argparse type: a number > 0 (e.g. 1.5)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a number greater than zero")
    return number
