"""`cookbook-lab down` leaves nothing: no process, namespace, link, mount or address of the lab.

Runs last among the lab tests (file name) and only with COOKBOOK_LAB=fresh or require: it takes the lab down.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from cookbook_lab.inventory import lab_addresses, lab_links, lab_mounts, lab_namespaces, lab_pids
from tests.labmode import BRINGS_UP


@pytest.mark.skipif(os.environ.get("COOKBOOK_LAB") not in BRINGS_UP,
                    reason="takes the lab down: COOKBOOK_LAB=fresh or require")
def test_down_leaves_nothing(lab: dict[str, Any]) -> None:
    """After the whole lab was up, down removes every process, namespace, link, mount and address it made."""
    from cookbook_lab import cli, cluster
    from cookbook_lab.common import Lab, pids_alive

    lab_ = Lab()
    before = lab_pids(lab_.state_dir, lab_.cache_dir)
    assert before, "the lab should have processes before down"
    assert lab_namespaces() and lab_links()
    cli.down(lab_)
    assert lab_namespaces() == []
    assert lab_links() == []
    assert lab_mounts(lab_.state_dir) == []
    assert lab_addresses() == []
    assert pids_alive(sorted(before)) == []
    assert lab_pids(lab_.state_dir, lab_.cache_dir) == set()
    assert not lab_.state_dir.exists()
    state = cluster.status(lab_)
    assert state["ganeti"]["up"] is False and state["ssh"]["up"] is False
