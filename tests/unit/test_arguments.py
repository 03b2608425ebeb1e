"""libcluster.arguments: --cluster/--group checked against the configuration, the FQDN type."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from libcluster.arguments import add_location_args, cluster_settings, default_group, fqdn_argument
from libcluster.errors import ConfigError
from libcluster.testing import load_config


def _parse(*argv: str, **options: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_location_args(parser, **options)
    return parser.parse_args(list(argv))


def test_cluster_and_group_are_checked_against_the_configuration(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert cluster_settings(config, _parse("--cluster", "lab", "--group", "B")).name == "lab"
    with pytest.raises(ConfigError, match="nowhere"):
        cluster_settings(config, _parse("--cluster", "nowhere"))
    with pytest.raises(ConfigError, match="Z"):
        cluster_settings(config, _parse("--cluster", "lab", "--group", "Z"))
    assert not hasattr(_parse("--cluster", "lab", group=False), "group")


def test_the_default_group_is_the_only_one_and_several_need_group(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert default_group(cluster_settings(config, _parse("--cluster", "prod")), None) == "A"
    lab = cluster_settings(config, _parse("--cluster", "lab"))
    assert default_group(lab, "B") == "B"
    with pytest.raises(ValueError, match=r"cluster lab has several node groups \(A, B\): pass --group"):
        default_group(lab, None)


@pytest.mark.parametrize("value", ["-rf", "vm1;reboot", "vm 1", "$(id)"])
def test_an_fqdn_argument_refuses_what_is_not_a_host_name(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        fqdn_argument(value)
    assert fqdn_argument("vm1.lab.example") == "vm1.lab.example"
