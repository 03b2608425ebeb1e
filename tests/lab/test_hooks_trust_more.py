"""More trust holes of the Ganeti hooks, closed and tried on the real lab:

- forged keys that are no valid event (a field of the wrong type, a value speaking for another cluster than
  its key's, no JSON, a key under no cluster), written with the nodes' etcd user as a compromised node
  could, neither stop nor confuse the running cookbook-hooks-agent: it logs and deletes each, and still
  handles a good event written after them;
- sre.ganeti.install-hooks (dry-run and real) never puts the nodes' etcd password on a command line, in any
  form (plain, base64 of it or of the settings file), on this host or on a node (they share the PID
  namespace: sampling this host's /proc/*/cmdline sees both), and the hooks it installs still send events;
- it installs a cron.d entry whose command, run as cron runs it, sends a spool left on a node that runs no
  hook (a former master); the lab runs no cron daemon, so the test runs the entry's command itself;
- `cookbook --doctor` fails an etcd without TLS or users (a throwaway plain etcd), with the fix, and checks
  that the nodes' etcd user may write the hooks prefix and nothing else (given the runner's user, it fails),
  without writing anything.

The fixtures (this module's config with its own event prefix, the nodes' etcd identity) come from
test_hooks_agent_trust; everything made here is removed at the end, pass or fail.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.lab.cookbook_lab import run_cookbook
from tests.lab.hooks_lab import Env, running_agent
from tests.lab.test_doctor import _copy as doctor_copy
from tests.lab.test_doctor import _doctor as run_doctor
from tests.lab.test_hooks import hooks_to_ourselves, wait_for  # noqa: F401 - fixture used by name
from tests.lab.test_hooks_agent_trust import env, node_etcd, syncs  # noqa: F401 - fixtures used by name

from libcluster import config as config_module
from libcluster.etcd import Gateway
from libcluster.hooks import install
from libcluster.hooks.events import EventStore, HookSettings
from cookbook_lab import etcd as etcd_lab
from cookbook_lab import topology

REPO = Path(__file__).resolve().parents[2]


def put_raw(env: Env, node_etcd: Gateway, path: str, text: str) -> str:  # noqa: F811 - env is the fixture
    """Write text under this module's prefix + path as the nodes' etcd user; the key."""
    key = f"{env.store.prefix}{path}"
    node_etcd.call("writing a key", "/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                                 "value": base64.b64encode(text.encode()).decode()})
    return key


def event_text(instance: str, **fields: object) -> str:
    """A post-phase instance-modify event of the lab cluster as the hook script writes it, fields replaced."""
    return json.dumps({"version": 1, "cluster": topology.CLUSTER, "hook": "instance-modify", "phase": "post",
                       "op": "OP_INSTANCE_SET_PARAMS", "instance": instance, "new_name": "", "node": "nowhere",
                       "time": int(time.time()), **fields})


@pytest.fixture
def agent(env: Env) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    """cookbook-hooks-agent running on this module's prefix and instances (stopped by its PID at the end)."""
    with running_agent(env.config, env.token, env.agent_log) as process:
        yield process


def keys(env: Env) -> list[str]:  # noqa: F811
    """Every key under this module's prefix (valid events or not)."""
    batch = env.store.read()
    return [event.key for event in batch.events] + [key for key, _ in batch.bad]


@pytest.fixture(autouse=True)
def no_key_left(env: Env) -> Iterator[None]:  # noqa: F811
    """Every key under this module's prefix is deleted after each test, pass or fail."""
    yield
    for key in keys(env):
        env.store.delete(key)


def test_malformed_forged_events_are_logged_and_deleted_and_the_agent_goes_on(
        env: Env, node_etcd: Gateway, agent: subprocess.Popen[bytes]) -> None:  # noqa: F811
    ghost = f"{env.token}-ghost-{secrets.token_hex(2)}.{topology.DOMAIN}"
    lab = f"{topology.CLUSTER}/{time.time_ns()}"
    bad = {
        put_raw(env, node_etcd, f"{lab}-1-time", event_text(ghost, time=[1])):
            "field 'time' must be int or float, not [1]",
        put_raw(env, node_etcd, f"{lab}-2-instance", event_text({"x": 1})):  # type: ignore[arg-type]
            "field 'instance' must be str, not {'x': 1}",
        put_raw(env, node_etcd, f"{lab}-3-cluster", event_text(ghost, cluster="prod")):
            "its value names cluster 'prod', its key 'lab' (a node may only speak for its own cluster)",
        put_raw(env, node_etcd, f"{lab}-4-json", "{not json"): "Expecting property name",
        put_raw(env, node_etcd, "stray", event_text(ghost)): "its value names cluster 'lab', its key 'stray'",
    }
    good = put_raw(env, node_etcd, f"{lab}-5-good", event_text(ghost))
    runs = len(syncs(env))
    wait_for(f"the agent to sync {ghost} after the bad keys",
             lambda: any(argv[3] == ghost for argv in syncs(env)[runs:]))
    assert agent.poll() is None, "the agent stopped"
    log = env.agent_log.read_text()
    for key, reason in bad.items():
        assert f"Deleting {key} under the hook events prefix: not a valid hook event (" in log, key
        assert reason in log.split(f"Deleting {key} ")[1].splitlines()[0], key
    assert syncs(env)[runs:] == [["--cluster", topology.CLUSTER, "--vm", ghost, "--delete"]]
    wait_for("every key deleted", lambda: keys(env) == [], 15)
    assert good not in keys(env) and "Unexpected error" not in log and "Traceback" not in log


@pytest.fixture(scope="module")
def installing(env: Env, hooks_to_ourselves: None) -> Iterator[Env]:  # noqa: F811
    """The module's config with this checkout's cookbooks and a spool per node of its own, the hooks of the lab
    nodes to itself (a lock shared with test_hooks); at the end the hooks and spools are removed."""
    env.raw["cookbooks_base_dirs"] = [str(REPO)]
    env.raw["hooks"]["spool_dir"] = f"/var/lib/ganeti/cookbook-event-spool-{env.token}"  # per node
    env.config.write_text(yaml.safe_dump(env.raw))
    try:
        yield env
    finally:
        run_cookbook(env.config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER, "--remove")
        nodes = sorted(node.name for node in env.ganeti.nodes() if not node.offline)
        env.remote.hosts(nodes).run_sync(f"rm -rf {shlex.quote(env.raw['hooks']['spool_dir'])}", timeout=60)


def password_forms(env: Env) -> list[str]:  # noqa: F811
    """The nodes' etcd password as it could appear: plain, base64 at each alignment, and the settings file's
    base64 (as install-hooks put it on its programs' command lines before)."""
    password = env.raw["hooks"]["node_etcd_password"]
    forms = [password] + [base64.b64encode(b"\0" * shift + password.encode()).decode()[4:-4] for shift in range(3)]
    conf = install.render_conf(topology.CLUSTER, HookSettings.from_config(config_module.load(env.config)))
    return forms + [base64.b64encode(conf.encode()).decode()[8:60]]


class CommandLines:
    """Samples every process's command line on this host (nodes included) until stopped."""

    def __init__(self, forms: list[str]) -> None:
        self.forms = forms
        self.found: list[str] = []
        self.programs = 0
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sweeps += 1
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                self.programs += "50-cookbook-event" in line or ".tmp.$$" in line
                self.found += [f"{pid}: {line[:80]}" for form in self.forms if form in line]


def test_install_hooks_puts_no_form_of_the_password_on_any_command_line_and_the_hooks_still_work(
        installing: Env) -> None:
    env = installing
    assert run_cookbook(env.config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER,
                        "--remove").returncode == 0  # so that the real run below writes every file
    with CommandLines(password_forms(env)) as seen:
        dry = run_cookbook(env.config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER, dry_run=True)
        real = run_cookbook(env.config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER)
    print(f"{seen.sweeps} sweeps of /proc, {seen.programs} sightings of the install programs")
    assert dry.returncode == 0 and real.returncode == 0
    assert "would change" in dry.stdout + dry.stderr and "cookbook-event.conf" in real.stdout + real.stderr
    assert seen.programs > 0, "the sampling never saw an install program: it proves nothing"
    assert seen.found == []
    conf = "/etc/ganeti/hooks/cookbook-event.conf"
    master = env.ganeti.master()
    assert env.gnt(f"stat -c '%a %U' {conf}")[1].strip() == "600 root"
    probe = f"{env.token}-probe.{topology.DOMAIN}"
    rc, output, _ = env.gnt(f"env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin GANETI_MASTER={master} "
                            f"GANETI_INSTANCE_NAME={probe} GANETI_HOOKS_PATH=instance-add GANETI_HOOKS_PHASE=post "
                            "/etc/ganeti/hooks/cookbook-event")
    assert rc == 0, output
    [event] = wait_for(f"the event of {probe} in etcd", lambda: [e for e in env.store.pending()
                                                                  if e.instance == probe], 30)
    assert (event.cluster, event.hook, event.phase) == (topology.CLUSTER, "instance-add", "post")


def test_the_cron_entry_sends_a_spool_left_on_a_node_that_runs_no_hook(installing: Env) -> None:
    env = installing
    assert run_cookbook(env.config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER).returncode == 0
    master = env.ganeti.master()
    node = sorted(set(env.ganeti.group("A")["node_list"]) - {master})[0]
    on_node = env.remote.hosts([node])
    entry = on_node.run_sync("cat /etc/cron.d/cookbook-event", timeout=30)[node].output.splitlines()[-1]
    fields = entry.split(None, 6)
    assert fields[:6] == ["*", "*", "*", "*", "*", "root"], entry
    spool = env.raw["hooks"]["spool_dir"]
    left = f"{env.token}-former.{topology.DOMAIN}"
    key = f"{env.store.prefix}{topology.CLUSTER}/{time.time_ns()}-{node.split('.')[0]}-1"
    value = json.dumps({"version": 1, "cluster": topology.CLUSTER, "hook": "instance-add", "phase": "post",
                        "op": "OP", "instance": left, "new_name": "", "node": node, "time": int(time.time())})
    spooled = f"{spool}/{key.rsplit('/', 1)[1]}"
    assert on_node.run_sync(f"mkdir -p {spool} && printf '%s\\n' {shlex.quote(key)} {shlex.quote(value)} > "
                            f"{spooled}", timeout=30)[node].rc == 0
    ran = on_node.run_sync(f"cd / && env -i PATH=/usr/bin:/bin SHELL=/bin/sh HOME=/root /bin/sh -c "
                           f"{shlex.quote(fields[6])}; echo rc=$?", timeout=90)[node]
    assert "rc=0" in ran.output, ran.output
    [sent] = wait_for(f"the event spooled on {node} in etcd", lambda: [e for e in env.store.pending()
                                                                      if e.instance == left], 10)
    assert sent.key == key
    assert on_node.run_sync(f"ls -A {spool} | grep -v '^\\.lock$' | wc -l", timeout=30)[node].output.strip() == "0"


@pytest.fixture
def plain_etcd(tmp_path: Path) -> Iterator[str]:
    """A throwaway etcd without TLS or authentication (as an unsafe site would run it); its URL. Stopped by PID."""
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    client, peer = (f"http://127.0.0.1:{port}" for port in ports)
    with (tmp_path / "etcd.log").open("w") as log:
        process = subprocess.Popen(["etcd", "--data-dir", str(tmp_path / "data"), "--listen-client-urls", client,
                                    "--advertise-client-urls", client, "--listen-peer-urls", peer,
                                    "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the plain etcd", lambda: etcd_lab.healthy(client), 30)
        yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_doctor_fails_an_etcd_without_tls_or_user_with_the_fix(lab_config: Path, tmp_path: Path,
                                                                plain_etcd: str) -> None:
    config, _ = doctor_copy(lab_config, tmp_path / "plain.yaml", locks={"etcd_url": plain_etcd})
    data = yaml.safe_load(config.read_text())
    del data["hooks"]
    config.write_text(yaml.safe_dump(data))
    code, lines = run_doctor(config)
    assert code == 1
    assert f"FAIL  etcd locks: {plain_etcd}: no TLS (http) and no etcd user: whoever reaches etcd can delete or " \
        "plant locks and forge hook events; fix: serve etcd over https with a certificate and turn its " \
        "authentication on, with users and roles (the runner's may write the locks and hook events, the nodes' " \
        "only the hooks prefix), then set locks.etcd_url (https://), etcd_ca_file, etcd_user and etcd_password" \
        in lines


def test_doctor_checks_what_the_nodes_etcd_user_may_do_and_changes_nothing(lab_config: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(lab_config.read_text())
    hooks = raw["hooks"]
    code, lines = run_doctor(lab_config)
    prefix = "/ganeti-cookbooks/hooks/"
    assert f"OK    etcd hook events nodes' user: {hooks['node_etcd_user']} at {hooks['node_etcd_url']} may write " \
        f"{prefix} and nothing else tried: reading it and writing the locks are refused (the probes changed " \
        "nothing)" in lines
    runner = raw["locks"]["etcd_user"]
    config, _ = doctor_copy(lab_config, tmp_path / "runner-on-nodes.yaml", hooks__node_etcd_user=runner,
                            hooks__node_etcd_password=raw["locks"]["etcd_password"])
    code, lines = run_doctor(config)
    assert code == 1
    assert f"FAIL  etcd hook events nodes' user: {runner} at {hooks['node_etcd_url']} may write the locks " \
        f"(/ganeti-cookbooks/locks/) and read the hook events ({prefix}); fix: grant {runner}'s role only WRITE on " \
        f"{prefix} (etcdctl role revoke-permission / grant-permission --prefix), never the runner's user" in lines
    assert raw["locks"]["etcd_password"] not in "\n".join(lines)
    runner_etcd = HookSettings.from_config(config_module.load(lab_config)).etcd
    for where in (prefix, "/ganeti-cookbooks/locks/"):
        batch = EventStore(runner_etcd, where).read()
        assert [key for key in [*(e.key for e in batch.events), *(k for k, _ in batch.bad)]
                if "_cookbook-doctor-" in key] == []
