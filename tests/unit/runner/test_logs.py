"""Console filtering of the runner's logging: cumin's chatter stays in the files, not on the terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from libcluster.runner.logs import Console, RunLogFiles


def test_cumin_info_goes_to_files_only_but_its_warnings_reach_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    console = Console(verbose=False, dry_run=False)
    files = RunLogFiles(tmp_path, "sre.ganeti.addnode", user="alice", dry_run=False)
    try:
        logging.getLogger("cumin.transports").info("Executing commands on 1 hosts")
        logging.getLogger("cumin.transports").warning("1 host unreachable")
        logging.getLogger("cookbooks.sre.ganeti.addnode").info("Pre-check SSH: OK")
    finally:
        files.close()
        console.close()
    err = capsys.readouterr().err
    assert "Executing commands" not in err
    assert "WARNING: 1 host unreachable" in err
    assert "Pre-check SSH: OK" in err
    info_log = (tmp_path / "sre" / "ganeti" / "addnode.log").read_text()
    assert "Executing commands on 1 hosts" in info_log
    assert "1 host unreachable" in info_log
