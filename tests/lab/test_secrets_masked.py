"""Secrets of the lab configuration stay out of what real `cookbook` processes print and write.

A YAML syntax error on the line holding the lab's real RAPI password prints the place and the kind of
error, no part of the value. A read-only RAPI password with a quote and a backslash (characters JSON and
Python escape) authenticates real runs against the lab, and no form of it (raw, JSON-escaped, repr,
unicode_escape, base64 of the Basic auth header) is in their output, log files or audit records. Ganeti's
RAPI refuses a non-ASCII password (seen: 401 for a user whose password holds "é"), so the non-ASCII
secret is the nodes' etcd password of the config copy, which is registered and never sent here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cookbook_lab import topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab

COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""
RAPI_USERS = "/var/lib/ganeti/rapi/users"


def run(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`cookbook -c CONFIG ARGV...`, output captured."""
    return subprocess.run([str(COOKBOOK), "-c", str(config), *argv], capture_output=True, text=True, timeout=300,
                          check=False)


def parts(secret: str, size: int = 6) -> set[str]:
    """Every run of size characters of secret: what a printed fragment of it would contain."""
    return {secret[start:start + size] for start in range(len(secret) - size + 1)}


@pytest.mark.parametrize(("breakage", "kind"), [
    (lambda line: f"{line}: x", "mapping values are not allowed here"),
    (lambda line: line.replace(": ", ': "', 1), "while scanning a quoted scalar"),
    (lambda line: line.replace(": ", ": *", 1), "found undefined alias"),
])
def test_a_yaml_error_on_the_line_of_the_real_rapi_password_prints_no_part_of_it(
        lab_config: Path, tmp_path: Path, breakage: Any, kind: str) -> None:
    text = lab_config.read_text()
    password = yaml.safe_load(text)["ganeti"]["clusters"]["lab"]["rapi_password"]
    assert len(password) >= 12, "the lab's RAPI password is a real-looking secret"
    lines = text.splitlines()
    [number] = [index for index, line in enumerate(lines) if line.strip().startswith("rapi_password:")]
    lines[number] = breakage(lines[number])
    bad = tmp_path / "config.yaml"
    bad.touch(mode=0o600)
    bad.write_text("\n".join(lines) + "\n")
    for argv in (["-l"], ["sre.ganeti.resource-report", "lab"]):
        done = run(bad, *argv)
        assert done.returncode == 1, done
        shown = done.stdout + done.stderr
        masked = re.sub("|".join(map(re.escape, parts(password))), "#", shown)  # a failure shows no secret either
        assert f"{bad}: not valid YAML at line " in shown and kind in shown, masked
        assert not [part for part in parts(password) if part in shown], f"part of the password printed: {masked}"


def rapi_users(lab: Lab) -> list[Path]:
    """The RAPI users file of every lab node that has one."""
    paths = ClusterPaths.of(lab)
    found = [paths.node_path(node, RAPI_USERS) for node in topology.cluster_nodes()]
    return [path for path in found if path.exists()]


def set_rapi_user(lab: Lab, user: str, password: str | None) -> None:
    """Add (read-only) or, with password None, remove user in every node's RAPI users file, owner and mode kept."""
    for path in rapi_users(lab):
        lines = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] != user]
        if password is not None:
            lines.append(f"{user} {password}")
        info = path.stat()
        tmp = path.with_name(f"users.{user}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        tmp.chmod(0o640)
        os.chown(tmp, info.st_uid, info.st_gid)
        tmp.replace(path)


@pytest.fixture
def escaped(lab_config: Path, tmp_path: Path) -> Iterator[tuple[Path, str, str, str]]:
    """A config copy whose read-only RAPI user is a new lab user with a password holding '"' and '\\', and whose
    nodes' etcd password holds 'é'; (config, user, RAPI password, non-ASCII password). The user is removed after."""
    lab = Lab()
    if not rapi_users(lab):
        pytest.skip("no lab node has a RAPI users file")
    tag = secrets.token_hex(3)
    user, password, accented = f"sec{tag}", f'Rq"7\\x-{secrets.token_hex(6)}', f"n\u00e9\"t\\{secrets.token_hex(6)}"
    data = yaml.safe_load(lab_config.read_text())
    cluster = data["ganeti"]["clusters"]["lab"]
    cluster.update(rapi_ro_user=user, rapi_ro_password=password)
    data["hooks"]["node_etcd_password"] = accented
    data["logs_base_dir"] = str(tmp_path / "logs")
    data["audit_log"] = str(tmp_path / "logs" / "audit.jsonl")
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    set_rapi_user(lab, user, password)
    try:
        deadline = time.monotonic() + 30
        while requests.get(f"{cluster['rapi_url']}/2/info", auth=(user, password), verify=cluster["ca_file"],
                           timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "RAPI did not take the new user"
            time.sleep(0.5)
        yield config, user, password, accented
    finally:
        set_rapi_user(lab, user, None)


def forms(secret: str, user: str = "") -> set[str]:
    """How a secret may read once written somewhere: raw, JSON-escaped (ASCII or not), repr, unicode_escape,
    HTML-escaped, and in a Basic auth header."""
    found = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
             secret.encode("unicode_escape").decode("ascii"), secret.replace('"', "&quot;")}
    if user:
        found.add(base64.b64encode(f"{user}:{secret}".encode()).decode("ascii"))
    return found


def test_an_escaped_secret_appears_in_no_form_in_output_logs_or_audit(escaped: tuple[Path, str, str, str],
                                                                    tmp_path: Path) -> None:
    config, user, password, accented = escaped
    report = run(config, "sre.ganeti.resource-report", "lab")
    assert report.returncode == 0 and re.search(r"^lab\s+TOTAL", report.stdout, re.M), report
    dry = run(config, "-d", "sre.ganeti.sync-netbox", "--cluster", "lab", "--vm", f"{user}.lab.example")
    assert dry.returncode == 0, dry
    wrong = run(config, "sre.ganeti.resource-report", "lab", "--format", password)  # pasted in the wrong place:
    # argparse's usage error quotes the bad value (in repr form: the backslash doubled)
    assert wrong.returncode != 0
    logs = [path for path in (tmp_path / "logs").rglob("*") if path.is_file()]
    assert tmp_path / "logs" / "audit.jsonl" in logs and any(path.name.endswith("-extended.log") for path in logs)
    written = {str(path): path.read_text(encoding="utf-8") for path in logs}
    written.update(output=report.stdout + report.stderr + dry.stdout + dry.stderr)
    leaks = {where: sorted(form for form in forms(password, user) | forms(accented) if form in text)
             for where, text in written.items()}
    assert not {where: found for where, found in leaks.items() if found}, leaks
    argparse_error = wrong.stdout + wrong.stderr
    assert "--format" in argparse_error and "invalid choice" in argparse_error, argparse_error
    assert not [form for form in forms(password) if form in argparse_error], "the usage error printed the password"
    assert "invalid choice: '*****'" in argparse_error, argparse_error
