"""Benchmark of `cookbook-chatops` on the lab: chat command to START in the channel, and END to the result.

Starts `cookbook-chatops -c CFG serve` as a subprocess on a copy of the lab configuration (the
lab's IRC server, etcd locks and SAL; the bot in the lab's chatops channel; the fixture cookbooks
of tests/fixtures added), and a real IRC client (libcluster.chatops.probe) as the user. Each run
says `!cookbook demo.hello bench`, then times from sending the line to receiving the cookbook's
`START` line, and from the `END` line to the result line, both as the user's client sees them. It
also times a request needing an approval until the approval request is shown (that path checks
the arguments with the cookbook's parser first). Medians are printed and written, with the exact
command, to bench/results/chatops.txt. Goal: under 1 s each.

Needs the lab's IRC and etcd up (`cookbook-lab status`); never starts or stops the lab.
Usage: .venv/bin/python bench/bench_chatops.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from libcluster.chatops.probe import IrcProbe
from cookbook_lab import tls, topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
RESULTS = REPO / "bench" / "results" / "chatops.txt"
GOAL = 1.0
"""Seconds allowed for command -> START and for END -> result."""
TIMEOUT = 60.0


def lab_ca() -> Path:
    """The lab CA, which verifies the lab's ngircd (TLS only)."""
    return tls.ca_file(ClusterPaths.of(Lab()))


def write_config(tmp: Path, tag: str) -> Path:
    """The lab configuration plus a chatops section: user bench<tag> may run demo.* and chatops.*."""
    data = yaml.safe_load(Lab().config_file.read_text())
    data["cookbooks_base_dirs"] = [*data["cookbooks_base_dirs"], str(FIXTURES)]
    data["logs_base_dir"] = str(tmp / "logs")
    data["audit_log"] = str(tmp / "logs" / "audit.jsonl")
    data["chatops"] = {
        "need_approval": ["chatops.slow"],
        "roles": {"bench": {"run": ["demo.*", "chatops.*"]}},
        "people": {"bench": {"identities": [f"irc:bench{tag}!*@*"], "roles": ["bench"]}},
        "irc": {"host": "127.0.0.1", "port": topology.IRC_PORT, "nick": f"cookbook-bot-{tag}",
                "channels": [topology.CHATOPS_CHANNEL], "ca_file": str(lab_ca()),
                "flood_burst": 20, "flood_interval": 0.05},  # the lab's ngircd has no penalties: time the service
    }
    path = tmp / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def one_run(client: IrcProbe, bot: str) -> tuple[float, float]:
    """Seconds from the command to START, and from END to the result line, of one run of demo.hello."""
    sent = time.monotonic()
    mark = client.say(topology.CHATOPS_CHANNEL, "!cookbook demo.hello bench")
    start = client.expect(r"^\[[0-9a-f]{6}\] START - Cookbook demo.hello", after=mark, nick=bot, timeout=TIMEOUT)
    end = client.expect(r"^\[[0-9a-f]{6}\] END \(PASS\) - Cookbook demo.hello", after=mark, nick=bot,
                        timeout=TIMEOUT)
    result = client.expect(r"^\[[0-9a-f]{6}\] PASS: demo.hello", after=mark, nick=bot, timeout=TIMEOUT)
    return start.at - sent, result.at - end.at


def approval_shown(client: IrcProbe, bot: str, state: Path) -> float:
    """Seconds from a request needing an approval to the approval request in the channel (then cancelled)."""
    sent = time.monotonic()
    mark = client.say(topology.CHATOPS_CHANNEL, f"!cookbook chatops.slow --state {state}")
    shown = client.expect(r"needs an approval", after=mark, nick=bot, timeout=TIMEOUT)
    run_id = shown.text[1:7]
    client.say(topology.CHATOPS_CHANNEL, f"!cookbook cancel {run_id}")
    client.expect(rf"^\[{run_id}\] cancelled", after=mark, nick=bot, timeout=TIMEOUT)
    return shown.at - sent


def main(argv: Sequence[str] | None = None) -> int:
    """Start the service, time the runs, print and write the medians; 1 if a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs measured (median)")
    args = parser.parse_args(argv)
    tag = secrets.token_hex(3)
    bot = f"cookbook-bot-{tag}"
    service_bin = str(Path(sys.executable).with_name("cookbook-chatops"))
    with tempfile.TemporaryDirectory(prefix="bench-chatops-") as tmp_name:
        tmp = Path(tmp_name)
        config = write_config(tmp, tag)
        service = subprocess.Popen([service_bin, "-c", str(config), "serve"], stdout=subprocess.DEVNULL,
                                   stderr=(tmp / "service.log").open("w"))
        client = IrcProbe("127.0.0.1", topology.IRC_PORT, f"bench{tag}", timeout=TIMEOUT,
                          tls=ssl.create_default_context(cafile=lab_ca()))
        try:
            client.join(topology.CHATOPS_CHANNEL)
            deadline = time.monotonic() + TIMEOUT
            while True:  # the bot answers once it has joined
                mark = client.say(topology.CHATOPS_CHANNEL, "!help")
                try:
                    client.expect(rf"^bench{tag}: ", after=mark, nick=bot, timeout=1.0)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline or service.poll() is not None:
                        raise
            one_run(client, bot)  # warm-up: bytecode and page caches
            timings = [one_run(client, bot) for _ in range(args.runs)]
            approvals = [approval_shown(client, bot, tmp) for _ in range(max(3, args.runs // 3))]
        finally:
            client.close()
            service.terminate()
            service.wait(TIMEOUT)
    to_start = statistics.median(start for start, _ in timings)
    to_result = statistics.median(result for _, result in timings)
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()} ({platform.machine()}, {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.2f}), Python {platform.python_version()}",
        f"# command: {shlex.join([sys.executable, *sys.argv])}",
        f"service: cookbook-chatops serve (subprocess) on the lab's ngircd {topology.IRC_PORT}, channel "
        f"{topology.CHATOPS_CHANNEL}, etcd locks and SAL of the lab config; cookbook demo.hello (fixture tree)",
        f"chat command -> START line in the channel (median of {args.runs}): {to_start:.3f} s  (goal < {GOAL} s)"
        f"  [min {min(s for s, _ in timings):.3f}, max {max(s for s, _ in timings):.3f}]",
        f"END line -> result line in the channel (median of {args.runs}): {to_result:.3f} s  (goal < {GOAL} s)"
        f"  [min {min(r for _, r in timings):.3f}, max {max(r for _, r in timings):.3f}]",
        f"request needing approval -> approval request shown, argument check included (median of "
        f"{len(approvals)}): {statistics.median(approvals):.3f} s",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if to_start < GOAL and to_result < GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
