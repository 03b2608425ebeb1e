"""resource-report over real RAPI bodies recorded from Ganeti 3.0.2: rows, totals, formats, failures."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from libcluster import capacity
from libcluster.cookbook import CookbookInitSuccess
from libcluster.errors import ConfigError, LibclusterError
from libcluster.ganeti import RapiConnectionError
from libcluster.testing import FakeCtx, load_config, load_cookbook

TREE = Path(__file__).resolve().parents[2]
"""This checkout: the folder holding cookbooks/."""


class Recorded:
    """A cluster answering the recorded bulk reads (optionally failing them)."""

    def __init__(self, name: str, data: tuple[list[dict], list[dict], list[dict]], error: Exception | None = None):
        """Serve data (nodes, groups, instances) under name."""
        self.name = name
        self.data = copy.deepcopy(data)
        self.error = error
        self.reads = 0

    def _read(self, index: int) -> list[dict]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.data[index]

    def nodes(self) -> list[dict]:
        """Recorded /2/nodes?bulk=1."""
        return self._read(0)

    def groups(self) -> list[dict]:
        """Recorded /2/groups?bulk=1."""
        return self._read(1)

    def instances(self) -> list[dict]:
        """Recorded instances."""
        return self._read(2)


@pytest.fixture(scope="module")
def recorded(recorded_dir: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """Nodes, groups and the two instances of the recorded 3-node session."""
    lines = (recorded_dir / "ganeti" / "rapi-transcript-3.0.2.jsonl").read_text().splitlines()
    transcript = [json.loads(line) for line in lines]

    def last(path: str, **params: Any) -> Any:
        hits = [e for e in transcript if e.get("method") == "GET" and e["path"] == path
                and (e.get("params") or {}) == params]
        return hits[-1]["response"]

    return (last("/2/nodes", bulk=1), last("/2/groups", bulk=1),
            [last("/2/instances/inst4.gl.test"), last("/2/instances/inst5.gl.test")])


@pytest.fixture
def report() -> Any:
    """The cookbook module."""
    return load_cookbook(TREE, "sre.ganeti.resource-report")


def _run(report: Any, tmp_path: Path, clusters: dict[str, Recorded], *argv: str) -> None:
    ctx = FakeCtx(load_config(tmp_path), clusters=clusters)  # type: ignore[arg-type]
    cookbook = report.ResourceReport(ctx)
    cookbook.get_runner(cookbook.argument_parser().parse_args(list(argv)))


def test_table_has_a_row_per_group_and_a_total_per_cluster(report: Any, tmp_path: Path, capsys: Any,
                                                            recorded: Any) -> None:
    clusters = {"lab": Recorded("lab", recorded), "prod": Recorded("prod", recorded)}
    with pytest.raises(CookbookInitSuccess):
        _run(report, tmp_path, clusters, "lab", "prod")
    out = capsys.readouterr().out
    nodes = recorded[0]
    free = capacity.format_mib(sum(node["mfree"] for node in nodes))
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["lab", "default"], ["lab", "TOTAL"], ["prod", "default"], ["prod", "TOTAL"]]
    assert all(row[2] == str(len(nodes)) and row[3] == "2" for row in rows)
    assert all(free in line for line in out.splitlines()[2:])
    assert "Mem free (per node)" in out and "N+1" in out
    assert all(cluster.reads == 3 for cluster in clusters.values())


def test_json_and_csv_carry_the_same_values_in_mib(report: Any, tmp_path: Path, capsys: Any, recorded: Any) -> None:
    expected = capacity.group_capacity("lab", *recorded)[0].as_dict()
    with pytest.raises(CookbookInitSuccess):
        _run(report, tmp_path, {"lab": Recorded("lab", recorded)}, "--format", "json", "lab")
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == expected and rows[1]["group"] == "TOTAL"
    with pytest.raises(CookbookInitSuccess):
        _run(report, tmp_path, {"lab": Recorded("lab", recorded)}, "--format", "csv", "lab")
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert table[0]["memory_free_mib"] == str(expected["memory_free_mib"])
    assert table[0]["node_loss_failures"] == ";".join(expected["node_loss_failures"])


def test_unknown_cluster_fails_before_any_request(report: Any, tmp_path: Path, recorded: Any) -> None:
    lab = Recorded("lab", recorded)
    with pytest.raises(ConfigError, match="unknown Ganeti cluster 'nope'"):
        _run(report, tmp_path, {"lab": lab}, "lab", "nope")
    assert lab.reads == 0


def test_an_unreachable_cluster_is_named_after_the_others_are_printed(report: Any, tmp_path: Path, capsys: Any,
                                                                      recorded: Any) -> None:
    down = Recorded("prod", recorded, RapiConnectionError("RAPI GET /2/nodes: connection refused"))
    with pytest.raises(LibclusterError, match="cannot read cluster.s.: prod: RAPI GET /2/nodes: connection refused"):
        _run(report, tmp_path, {"lab": Recorded("lab", recorded), "prod": down}, "lab", "prod")
    assert "lab" in capsys.readouterr().out
