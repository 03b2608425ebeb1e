"""The documentation build (docs/conf.py, nitpicky with warnings as errors, as ./dev docs runs it) fails on a
reference to a libcluster object that does not exist, and resolves the names docstrings use: a name a package
re-exports (libcluster.dns.DNS, documented where it is defined) and a name as its module sees it (DNSError
written in libcluster.dns)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parents[2] / "docs"
TARGETS = """
.. py:module:: libcluster.dns.client
.. py:class:: DNS

.. py:module:: libcluster.dns.errors
.. py:exception:: DNSError

.. py:module:: libcluster.resources
.. py:function:: node_lock(cluster, node)

.. py:currentmodule:: libcluster.dns
"""
"""Objects documented where they are defined, as the API reference documents them."""


def _build(tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str) -> tuple[int, str]:
    """Build a one-page project with the real conf.py citing reference; (exit status, warnings)."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source / "conf.py")
    (source / "index.rst").write_text(f"Test\n====\n{TARGETS}\nSee {reference}.\n")
    status = build_main(["-q", "-n", "-W", "--keep-going", "-b", "html", str(source), str(tmp_path / "html")])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("reference", [
    ":class:`libcluster.dns.client.DNS`",
    ":class:`libcluster.dns.DNS`",               # re-exported by the package
    ":exc:`DNSError`",                           # as libcluster.dns sees it
    ":func:`libcluster.resources.node_lock`",
    ":class:`pathlib.Path`",                     # not ours: cannot be checked offline, not reported
])
def test_existing_objects_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str) -> None:
    status, warnings = _build(tmp_path, capsys, reference)
    assert status == 0, warnings


@pytest.mark.parametrize("reference", [
    ":class:`libcluster.dns.NoSuchClient`",
    ":class:`NoSuchClient`",
    ":func:`libcluster.resources.no_such_lock`",
    ":mod:`libcluster.no_such_module`",
])
def test_a_reference_to_nothing_fails_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 reference: str) -> None:
    status, warnings = _build(tmp_path, capsys, reference)
    assert status != 0
    assert "reference target not found" in warnings and reference.split("`")[1] in warnings
