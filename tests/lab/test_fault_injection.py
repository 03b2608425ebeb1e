"""Fault injection on sre.ganeti.makevm, on the real lab: the runner SIGKILLed at each step, and each service it talks
to (NetBox, Knot, the RAPI daemon, etcd) hung with SIGSTOP right after the confirmation.

A killed run leaves its journal (start, intent/result lines, no end); `cookbook --recover` lists it and
`cookbook -y --recover RUN_ID` undoes what it did. A hung service makes the run stop, roll back what it can and
name by kind, name and id what it could not remove (exit 93); once the service is back, `--recover` removes that
too. In every case nothing of the VM is left in Ganeti, NetBox or DNS.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.service_hang import hung
from tests.lab.test_makevm import (  # noqa: F401 - env and hostname are fixtures used by the tests below
    ALLOCATED,
    COOKBOOK,
    LOCATION,
    REPO,
    Env,
    assert_nothing_left,
    env,
    hostname,
)

TIMEOUT = 300
PYTHON = REPO / ".venv" / "bin" / "python"

KILL_POINTS = [
    pytest.param("intent", 1, "ip-address-allocate", id="first-address-in-flight"),
    pytest.param("result", 2, "ip-address-allocate", id="addresses-allocated"),
    pytest.param("intent", 5, "record-add", id="dns-update-in-flight"),
    pytest.param("intent", 7, "instance-create", id="create-job-in-flight"),
    pytest.param("result", 7, "instance-create", id="create-job-running"),
    pytest.param("intent", 9, "vm-interface-create", id="netbox-vm-made-interface-in-flight"),
    pytest.param("result", 12, "vm-update", id="all-done-no-end"),
]
"""Where the runner is SIGKILLed: right after it wrote this journal line (event, seq), whose change has this action."""


def journal(path: Path) -> list[dict[str, Any]]:
    """The journal lines of the audit file (a line being written is skipped)."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def config_with_audit(env: Env, tmp_path: Path, *, timeout: int | None = None,
                      ttl: int | None = None) -> tuple[Path, Path]:
    """A lab config copy whose audit file is the test's own (its journal holds only this test's runs); timeout, if
    given, is the seconds NetBox, DNS and RAPI requests may take (a hung service is noticed that fast; --recover
    waits that long after a change without result), ttl the lock lease (--recover waits for a dead run's)."""
    audit_log = tmp_path / "audit.jsonl"
    data = json.loads(json.dumps(env.raw))
    data["audit_log"] = str(audit_log)
    if ttl is not None:
        data["locks"]["ttl"] = ttl
    if timeout is not None:
        data["netbox"]["timeout"] = data["dns"]["timeout"] = timeout
        for cluster in data["ganeti"]["clusters"].values():
            cluster["timeout"] = timeout
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(data))
    return config, audit_log


def cookbook(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cookbook -c CONFIG ARGS...`, output printed for the test log."""
    result = subprocess.run([str(COOKBOOK), "-c", str(config), *args], cwd=REPO, capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    print(f"$ cookbook {' '.join(args)}\n[exit {result.returncode}]\n{result.stdout}{result.stderr}")
    return result


def start_makevm(config: Path, hostname: str, *, kill_after: tuple[str, int] | None = None,
                 ) -> tuple[subprocess.Popen[str], list[str]]:
    """Start makevm as an operator would (-y), its stderr collected line by line in the returned list; with
    kill_after (event, seq), the run SIGKILLs itself right after writing that journal line (killed_runner)."""
    if kill_after is None:
        command = [str(COOKBOOK)]
    else:
        command = [str(PYTHON), "-m", "tests.lab.killed_runner", kill_after[0], str(kill_after[1])]
    process = subprocess.Popen([*command, "-c", str(config), "-y", "sre.ganeti.makevm", *LOCATION, hostname],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        lines.extend(process.stderr)

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def wait_for(what: str, condition: Callable[[], bool], process: subprocess.Popen[str], lines: list[str]) -> None:
    """Poll condition every 20 ms; fail naming what if the run ends or TIMEOUT passes first."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run ended or timed out before {what}:\n{''.join(lines)}")
        time.sleep(0.02)


def addresses_in(lines: list[dict[str, Any]]) -> list[str]:
    """Every IP address the journal names (intent targets, result details, undo arguments): the PTRs to check."""
    found = []
    for line in lines:
        for value in (line.get("target"), (line.get("detail") or {}).get("address"),
                      ((line.get("undo") or {}).get("args") or {}).get("address")):
            try:
                found.append(str(ipaddress.ip_interface(str(value))))
            except ValueError:
                continue
    return found


def run_id_of(lines: list[dict[str, Any]]) -> str:
    """The id of the (only) makevm run in a journal."""
    ids = {line["id"] for line in lines if line["event"] == "start" and line["cookbook"] == "sre.ganeti.makevm"}
    assert len(ids) == 1, f"expected one makevm run in the journal, found {ids}"
    return ids.pop()


def recover(config: Path, audit_log: Path, run_id: str) -> None:
    """`--recover` lists the dead run; `-y --recover RUN_ID` undoes it (waiting for its lease) and journals it."""
    listing = cookbook(config, "--recover")
    assert listing.returncode == 0 and run_id in listing.stdout + listing.stderr
    started = time.monotonic()
    result = cookbook(config, "-y", "--recover", run_id)
    print(f"recover took {time.monotonic() - started:.1f} s (waiting for the dead run's locks included)")
    assert result.returncode == 0, result.stderr
    recovered = [line for line in journal(audit_log) if line["event"] == "recovered" and line["id"] == run_id]
    assert recovered, "no recovered line on the dead run"
    assert run_id not in cookbook(config, "--recover").stdout


@pytest.mark.parametrize(("event", "seq", "action"), KILL_POINTS)
def test_makevm_killed_at_a_step_is_undone_by_recover(env: Env, hostname: str, tmp_path: Path, event: str,
                                                      seq: int, action: str) -> None:
    """SIGKILLed right after writing the journal line (event, seq): no end line; --recover RUN_ID leaves nothing.
    Short lease and request timeouts: --recover waits for both, and a test need not wait the lab's 30 s."""
    config, audit_log = config_with_audit(env, tmp_path, timeout=10, ttl=10)
    process, lines = start_makevm(config, hostname, kill_after=(event, seq))
    process.wait(TIMEOUT)
    assert process.returncode == -signal.SIGKILL, f"the run was not killed at the {event} line of change {seq}:\n" \
        + "".join(lines)
    written = journal(audit_log)
    intents = {line["seq"]: line for line in written if line["event"] == "intent"}
    assert intents[seq]["action"] == action, f"change {seq} is {intents[seq]['action']}, the test expects {action}"
    assert not [line for line in written if line["event"] == "end"], "a killed run wrote an end line"
    recover(config, audit_log, run_id_of(written))
    assert_nothing_left(env, env.fqdn(hostname), addresses_in(written))


HANGS = [
    pytest.param("netbox", id="netbox"),
    pytest.param("knot", id="knot"),
    pytest.param("rapi", id="rapi"),
    pytest.param("etcd", id="etcd"),
]


@pytest.mark.parametrize("service", HANGS)
def test_makevm_with_a_hung_service_names_what_is_left_and_recover_removes_it(env: Env, hostname: str,
                                                                                tmp_path: Path, service: str) -> None:
    """SIGSTOP service right after the confirmation: the run stops and rolls back; whatever it could not remove is
    named by kind, name and id (exit 93); with the service back, --recover leaves nothing."""
    config, audit_log = config_with_audit(env, tmp_path, timeout=5)
    process, lines = start_makevm(config, hostname)
    try:
        wait_for("the confirmation", lambda: any("confirmed by -y" in line for line in lines), process, lines)
        with hung(service):
            exit_code = process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = "".join(lines)
    print(f"[makevm exit {exit_code} with {service} hung]\n{text}")
    assert exit_code != 0
    written = journal(audit_log)
    assert [line for line in written if line["event"] == "end"], "the run did not end cleanly"
    left = [line for line in text.splitlines() if "left behind:" in line]
    if exit_code == 93:
        assert left, "exit 93 without naming what is left"
        assert all("(id " in line for line in left), left
    else:
        assert not left
    run_id = run_id_of(written)
    if exit_code == 93:
        recover(config, audit_log, run_id)
    assert_nothing_left(env, env.fqdn(hostname), ALLOCATED.findall(text) + addresses_in(written))
