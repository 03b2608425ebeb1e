"""`cookbook --doctor`: check the configuration and every service it names, one line each with a fix.

Every check reads or is refused: RAPI and NetBox rights are probed with requests the server must
refuse or reject (a read-write NetBox token POSTs an empty VM, which NetBox rejects as invalid),
the DNS update has a prerequisite that fails (so the zone is unchanged), etcd is read (the nodes'
etcd user's writes are probed in a transaction branch etcd checks but never runs). The clients
are the library's own, so TLS, credentials and timeouts are the ones every cookbook run uses.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from libcluster import audit, config, redact
from libcluster.changes import ChangeLog
from libcluster.errors import ConfigError, LibclusterError
from libcluster.runner.trust import mode_problems, tree_paths

MIN_NETBOX = (4, 3)
"""The sync reads VM interfaces through GraphQL, which NetBox has from 4.3 on."""
SECRET_FILE_WORDS = ("key", "password", "secret", "token")
"""A `*_file` key whose name holds one of these names a file with a secret in it (a TLS key, a password)."""


@dataclass(frozen=True)
class Line:
    """One result: ok or not, what was checked, what was seen, and how to fix it when it is wrong."""

    ok: bool
    what: str
    seen: str
    fix: str = ""

    def render(self) -> str:
        """`OK    what: seen` or `FAIL  what: seen; fix: ...`, secrets masked."""
        text = f"{'OK  ' if self.ok else 'FAIL'}  {self.what}: {self.seen}"
        return redact.redact(text + (f"; fix: {self.fix}" if not self.ok and self.fix else ""))


def _failure(what: str, exc: BaseException, fix: str) -> Line:
    """A failed check from the library's error (its message names the server, never a secret)."""
    return Line(False, what, str(exc) or type(exc).__name__, fix)


# Files


def _secret_files(data: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, path) of every `*_file` value whose key names a key, password, secret or token."""
    if isinstance(data, dict):
        for sub, value in data.items():
            yield from _secret_files(value, f"{key}.{sub}" if key else str(sub))
    elif isinstance(data, str) and key.endswith("_file"):
        leaf = key.rsplit(".", 1)[-1]
        if any(word in leaf for word in SECRET_FILE_WORDS):
            yield key, data


def check_files(root: config.Section, path: Path) -> Iterator[Line]:
    """The configuration (it holds secrets), its directory, files of secrets it names, logs and audit log."""
    problems = mode_problems(path, secret=True)
    directory = path.resolve().parent
    if stat.S_IMODE(directory.stat().st_mode) & stat.S_IWOTH:
        problems.append(f"its directory {directory} is writable by everyone")
    yield Line(not problems, f"config {path}", "; ".join(problems) or "owner and mode keep its secrets",
               f"chown root:root {path} && chmod 0640 {path} (directory 0750)")
    for key, value in _secret_files(dict(root)):
        secret_file = Path(value)
        if not secret_file.is_file():
            yield Line(False, f"file {key}", f"{value} does not exist", f"create it or correct {key}")
            continue
        problems = mode_problems(secret_file, secret=True)
        yield Line(not problems, f"file {key}", "; ".join(problems) or f"{value}: owner and mode keep it secret",
                   f"chown root:root {value} && chmod 0600 {value}")
    for base in root.list("cookbooks_base_dirs"):
        tree = Path(str(base)) / "cookbooks"
        if not tree.is_dir():
            yield Line(False, "cookbooks_base_dirs", f"{tree} is not a directory",
                       f"install the cookbooks there or correct cookbooks_base_dirs ({base})")
            continue
        # Their code runs as the runner's user (root with sudo): nobody else may change it.
        paths = list(tree_paths(Path(str(base))))
        problems = [f"{path}: {problem}" for path in paths for problem in mode_problems(path, secret=False)]
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        yield Line(not problems, "cookbooks_base_dirs", shown or f"{tree} changed by its owner only",
                   f"chown -R root:root {base} && chmod -R go-w {base}")
    logs = Path(root.str("logs_base_dir"))
    audit_log = audit.path_from_config(root)
    for what, target, is_dir in (("logs_base_dir", logs, True), ("audit_log", audit_log, False)):
        existing = next(parent for parent in (target, *target.parents) if parent.exists())
        kind_ok = existing.is_dir() == is_dir if existing == target else existing.is_dir()
        ok = kind_ok and os.access(existing, os.W_OK)
        seen = f"{target} writable" if ok else f"{target} not writable ({existing} is " + (
            "not writable)" if kind_ok else f"{'a directory' if existing.is_dir() else 'not a directory'})")
        yield Line(ok, what, seen, f"create {target if is_dir else target.parent} (a directory, 0750, of the user "
                   "running cookbooks) or correct the key")


# Ganeti


def check_ganeti(root: config.Section) -> Iterator[Line]:
    """Per cluster: RAPI answers with TLS verified, its read-only and read-write users are accepted, cumin reaches
    the master."""
    from libcluster.ganeti import connect
    from libcluster.ganeti.errors import RapiAuthError, RapiConnectionError

    clusters = root.section("ganeti", {}).section("clusters", {})
    for name in clusters:
        what = f"ganeti {name}"
        section = clusters.section(name)
        try:
            cluster = connect(root, name, dry_run=True, changes=ChangeLog(dry_run=True), remote=None)
        except ConfigError as exc:
            yield _failure(what, exc, f"correct ganeti.clusters.{name} (see config.example.yaml)")
            continue
        url = section.str("rapi_url")
        ca = section.str("ca_file", None) or "the system CAs"
        try:
            info = cluster.info()
        except RapiConnectionError as exc:
            if "TLS failed" in str(exc):
                yield Line(False, f"{what} RAPI", f"{url}: TLS certificate not verified against {ca}",
                           f"set ganeti.clusters.{name}.ca_file to the CA that signed the RAPI certificate "
                           "(self-signed: the master's /var/lib/ganeti/rapi.pem)")
            else:
                yield _failure(f"{what} RAPI", exc, f"check rapi_url and that ganeti-rapi runs on the master and "
                               f"port {url.rsplit(':', 1)[-1]} is open")
            continue
        except RapiAuthError as exc:
            yield _failure(f"{what} RAPI read-only user", exc,
                           f"correct ganeti.clusters.{name}.rapi_ro_user/rapi_ro_password (users file on the master: "
                           "/var/lib/ganeti/rapi/users)")
            continue
        except LibclusterError as exc:
            yield _failure(f"{what} RAPI", exc, "check rapi_url points at the cluster's RAPI")
            continue
        anonymous = _answers_anyone(url, section)
        yield Line(not anonymous, f"{what} RAPI", f"{url} answers, TLS verified against {ca}, " + (
            "but it answers reads without a password: the read-only user is not checked" if anonymous else
            f"read-only user {section.str('rapi_ro_user')!r} accepted") + f" (cluster {info.get('name')}, Ganeti "
            f"{info.get('software_version')})", "start ganeti-rapi with --require-authentication (Debian: "
            "/etc/default/ganeti, RAPI_ARGS) so that only configured users read")
        try:
            cluster.rapi.query("node", ["name"])
            yield Line(True, f"{what} RAPI read-write user", f"{section.str('rapi_user')!r} accepted")
        except LibclusterError as exc:
            yield _failure(f"{what} RAPI read-write user", exc,
                           f"correct ganeti.clusters.{name}.rapi_user/rapi_password; the user needs 'write' in the "
                           "master's /var/lib/ganeti/rapi/users")
        yield from _check_master(root, name, str(info.get("master", "")))


def _answers_anyone(url: str, section: config.Section) -> bool:
    """Whether the RAPI answers /2/info to a user it cannot know (then reads prove no password)."""
    from libcluster.ganeti import DEFAULT_TIMEOUT
    from libcluster.ganeti.rapi import Credentials, RapiClient

    nobody = Credentials(f"cookbook-doctor-{secrets.token_hex(4)}", secrets.token_hex(16))
    client = RapiClient(url, read_write=nobody, read_only=nobody, ca_file=section.str("ca_file", None),
                        timeout=section.float("timeout", DEFAULT_TIMEOUT))
    try:
        client.get("/2/info")
    except LibclusterError:
        return False
    return True


def _check_master(root: config.Section, cluster: str, master: str) -> Iterator[Line]:
    from libcluster.remote import Remote

    what = f"cumin {cluster} master"
    if not root.has("remote"):
        yield Line(False, what, "no remote section: cookbooks cannot run gnt-* commands on the master",
                   "add remote.cumin_config (and remote.ssh_user)")
        return
    try:
        remote = Remote(root.section("remote"), dry_run=True, changes=ChangeLog(dry_run=True))
        result = remote.hosts([master]).run_sync("true", is_safe=True, timeout=30)
    except LibclusterError as exc:
        yield _failure(what, exc, "correct remote.cumin_config")
        return
    yield Line(result.ok, what, f"{master} {'runs commands over SSH' if result.ok else result[master].describe()}",
               f"check that {root.section('remote').str('ssh_user', 'root')}'s SSH key is accepted on {master} and "
               "its host key is known (cumin configuration: remote.cumin_config)")


# NetBox


def check_netbox(root: config.Section) -> Iterator[Line]:
    """NetBox reachable, its version, the read-only token reads and cannot write, the read-write token may write."""
    from libcluster.netbox import NetBox

    if not root.has("netbox"):
        return
    section = root.section("netbox")
    url = section.str("url", "")
    try:
        reader = NetBox(section, read_write=False, dry_run=True, changes=ChangeLog(dry_run=True))
        major, minor = reader.version
    except LibclusterError as exc:
        yield _failure("netbox", exc, "check netbox.url (and netbox.ca_file) and that NetBox answers")
        return
    yield Line((major, minor) >= MIN_NETBOX, "netbox", f"{url} answers, API version {major}.{minor}",
               f"upgrade NetBox to {MIN_NETBOX[0]}.{MIN_NETBOX[1]} or later (the sync reads through GraphQL)")
    for key, writer in (("ro_token", False), ("token", True)):
        yield _check_token(section, key, writer)


def _check_token(section: config.Section, key: str, writer: bool) -> Line:
    """One token: it reads, and it may write (token) or may not (ro_token).

    The write probe POSTs an empty VM: NetBox refuses it without write permission (403) and rejects it
    as invalid with it (400); nothing is created either way.
    """
    from libcluster.netbox import NetBox
    from libcluster.netbox.errors import NetBoxAuthError, NetBoxValidationError

    what = f"netbox {key}"
    probe = config.Section({**section, "token": section.str(key)}, section.where, section.source)
    client = NetBox(probe, read_write=True, dry_run=False, changes=ChangeLog(dry_run=False))
    try:
        client.count("vm")
    except NetBoxAuthError as exc:
        return _failure(what, exc, f"set netbox.{key} to a valid token (NetBox: API tokens)"
                        + ("" if writer else " without write permission"))
    except LibclusterError as exc:
        return _failure(what, exc, "check that NetBox answers")
    try:
        client.create("vm", [{}])
        may_write = True  # NetBox took an empty VM: it may certainly write
    except NetBoxValidationError:
        may_write = True
    except NetBoxAuthError:
        may_write = False
    except LibclusterError as exc:
        return _failure(what, exc, "check that NetBox answers")
    if writer:
        return Line(may_write, what, "accepted, may write" if may_write else "accepted for reads, refused for writes",
                    "give netbox.token write permission (and object permissions on VMs, interfaces, IP addresses)")
    return Line(not may_write, what, "accepted for reads, cannot write" if not may_write else
                "accepted, and may write: reads and dry-runs would run with write rights",
                "give netbox.ro_token no write permission (uncheck 'Write enabled')")


# DNS


def check_dns(root: config.Section) -> Iterator[Line]:
    """Per zone: the primary answers its SOA, accepts the TSIG key for an update (prerequisite fails) and an AXFR."""
    import dns.name
    import dns.rcode
    import dns.update

    from libcluster.dns.client import DNS
    from libcluster.dns.errors import DNSUnavailable

    if not root.has("dns"):
        return
    section = root.section("dns")
    try:
        server = DNS(section, dry_run=True, changes=ChangeLog(dry_run=True)).server
    except LibclusterError as exc:
        yield _failure("dns", exc, "correct the dns section")
        return
    where = server.where
    for zone in section.list("zones"):
        what = f"dns {zone}"
        origin = dns.name.from_text(str(zone).replace("/", "-"))
        try:
            serial = server.serial(origin)
        except DNSUnavailable as exc:
            yield _failure(f"dns server {where}", exc, "check dns.server and dns.port and that the primary DNS "
                           "server runs (zones not checked)")
            return
        except LibclusterError as exc:
            yield _failure(what, exc, f"serve {zone} on {where} or remove it from dns.zones")
            continue
        # An update whose prerequisite (a random name exists) fails: TSIG and the update right are checked, and
        # the server changes nothing.
        probe = dns.name.from_text(f"_cookbook-doctor-{secrets.token_hex(6)}", origin)
        message = dns.update.UpdateMessage(origin)
        message.present(probe)
        message.add(probe, 60, "TXT", '"cookbook --doctor"')
        try:
            with server.connection() as sock:
                rcode = server.send(message, sock)
        except LibclusterError as exc:
            yield _failure(what, exc, f"dns.tsig_name/tsig_algorithm/tsig_secret must match the key {where} has")
            continue
        if rcode != dns.rcode.NXDOMAIN:
            yield Line(False, what, f"{where} answered {dns.rcode.to_text(rcode)} to a TSIG update whose "
                       "prerequisite fails (NXDOMAIN expected)", f"allow updates of {zone} with the TSIG key "
                       f"{section.str('tsig_name')} in the server's ACL")
            continue
        try:
            count = sum(1 for _ in server.transfer(origin))
        except LibclusterError as exc:
            yield _failure(what, exc, f"allow transfers of {zone} with the TSIG key {section.str('tsig_name')}")
            continue
        yield Line(True, what, f"{where} serves it (serial {serial}), TSIG update accepted (prerequisite failed, "
                   f"nothing changed), AXFR {count} records")


# etcd


SECURE_ETCD_FIX = ("serve etcd over https with a certificate and turn its authentication on, with users and roles "
                   "(the runner's may write the locks and hook events, the nodes' only the hooks prefix), then set "
                   "{keys}")


def _insecure(access: Any, keys: str) -> tuple[str, str]:
    """What makes an etcd access unsafe for locks and hook events ("" when nothing), and the fix."""
    problems = [problem for bad, problem in ((not access.url.startswith("https://"), "no TLS (http)"),
                                             (not access.user, "no etcd user")) if bad]
    if not problems:
        return "", ""
    return (f"{access.url}: {' and '.join(problems)}: whoever reaches etcd can delete or plant locks and forge hook "
            "events", SECURE_ETCD_FIX.format(keys=keys))


def check_etcd(root: config.Section) -> Iterator[Line]:
    """The locks' etcd and the hook events' etcd: TLS and users (FAIL without), read with the credentials the
    runner and the agent use; the nodes' user may write the hooks prefix and nothing else."""
    from libcluster import locks
    from libcluster.etcd import EtcdAccess

    if root.section("locks", {}).has("etcd_url"):
        try:
            access = EtcdAccess.from_section(root.section("locks"))
            problem, fix = _insecure(access, "locks.etcd_url (https://), etcd_ca_file, etcd_user and etcd_password")
            if problem:
                yield Line(False, "etcd locks", problem, fix)
            else:
                backend = locks.from_config(root, owner="cookbook --doctor", dry_run=True).backend
                backend.holders("cookbook-doctor")  # type: ignore[union-attr]
                yield Line(True, "etcd locks", f"{access.url} reads the lock prefix over TLS as {access.user}")
        except LibclusterError as exc:
            yield _failure("etcd locks", exc, "check locks.etcd_url (and its CA, user and password) and that etcd "
                           "runs")
    else:
        file_dir = root.section("locks", {}).str("file_dir", locks.DEFAULT_FILE_DIR)
        try:
            locks.from_config(root, owner="cookbook --doctor", dry_run=True)
            yield Line(True, "locks", f"file locks in {file_dir} (no locks.etcd_url): runs on other hosts are not "
                       "kept apart")
        except LibclusterError as exc:
            yield _failure("locks", exc, f"remove {file_dir} (it is created 0700 for the user running cookbooks) "
                           "or set locks.file_dir")
    if root.has("hooks"):
        yield from _check_hook_events(root)


def _check_hook_events(root: config.Section) -> Iterator[Line]:
    """The agent's access to the hook events, and the nodes' user: TLS, a user, and its rights."""
    from libcluster.hooks.events import EventStore, HookSettings
    from libcluster.locks import DEFAULT_ETCD_PREFIX

    try:
        settings = HookSettings.from_config(root)
    except LibclusterError as exc:
        yield _failure("etcd hook events", exc, "check the hooks section")
        return
    problem, fix = _insecure(settings.etcd, "hooks.etcd_url (or locks.etcd_url) with its CA, user and password")
    if problem:
        yield Line(False, "etcd hook events", problem, fix)
    else:
        try:
            pending = EventStore(settings.etcd, settings.prefix).pending()
            yield Line(True, "etcd hook events", f"{settings.etcd.url} reads {settings.prefix} ({len(pending)} "
                       f"pending) over TLS as {settings.etcd.user}")
        except LibclusterError as exc:
            yield _failure("etcd hook events", exc, "check hooks.etcd_url (or locks.etcd_url), its CA, user and "
                           "password, and that etcd runs")
    what = "etcd hook events nodes' user"
    problem, fix = _insecure(settings.node_etcd, "hooks.node_etcd_url (https://), node_etcd_ca_file, node_etcd_user "
                             "and node_etcd_password")
    if problem:
        yield Line(False, what, problem, fix)
        return
    try:
        denied = _node_rights(settings.node_etcd, settings.prefix, root.section("locks", {}).str(
            "etcd_prefix", DEFAULT_ETCD_PREFIX))
    except LibclusterError as exc:
        yield _failure(what, exc, "check hooks.node_etcd_url, node_etcd_ca_file, node_etcd_user and "
                       "node_etcd_password (the nodes' etcd user, its password) and that etcd runs")
        return
    user = settings.node_etcd.user
    if denied:
        yield Line(False, what, f"{user} at {settings.node_etcd.url} may {' and '.join(denied)}", f"grant {user}'s "
                   f"role only WRITE on {settings.prefix} (etcdctl role revoke-permission / grant-permission "
                   "--prefix), never the runner's user")
    else:
        yield Line(True, what, f"{user} at {settings.node_etcd.url} may write {settings.prefix} and nothing else "
                   "tried: reading it and writing the locks are refused (the probes changed nothing)")


def _node_rights(access: Any, hooks_prefix: str, locks_prefix: str) -> list[str]:
    """What the nodes' etcd user may do that it should not ("may ..."); LibclusterError when it cannot write the
    hooks prefix. Writes are probed in the failure branch of a transaction with no comparison, which etcd checks
    but never runs."""
    from libcluster.etcd import Gateway
    from libcluster.hooks.events import EventError, b64, range_end

    gateway = Gateway(access, 5, EventError)
    probe = f"_cookbook-doctor-{secrets.token_hex(4)}"

    def allowed(what: str, path: str, payload: dict[str, Any]) -> bool:
        try:
            gateway.call(what, path, payload)
        except EventError as exc:
            if "permission denied" in str(exc):
                return False
            raise
        return True

    def put(key: str) -> dict[str, Any]:
        return {"failure": [{"request_put": {"key": b64(key), "value": b64("")}}]}

    if not allowed("probing a write under the hooks prefix", "/kv/txn", put(hooks_prefix + probe)):
        raise EventError(f"etcd at {access.url}: {access.user} may not write under {hooks_prefix}: hooks on the "
                         "nodes cannot record events")
    denied = []
    if allowed("probing a write under the locks prefix", "/kv/txn", put(locks_prefix.rstrip("/") + "/" + probe)):
        denied.append(f"write the locks ({locks_prefix})")
    if allowed("probing a read of the hook events", "/kv/range", {"key": b64(hooks_prefix), "count_only": True,
                                                                   "range_end": b64(range_end(hooks_prefix))}):
        denied.append(f"read the hook events ({hooks_prefix})")
    return denied


# IRC


def _irc(section: config.Section, host_key: str, port_key: str) -> tuple[str, int, Any]:
    from libcluster.sal import PLAIN_PORT, TLS_PORT, tls_context

    tls = tls_context(section)
    return section.str(host_key), section.int(port_key, TLS_PORT if tls else PLAIN_PORT), tls


def check_irc(root: config.Section) -> Iterator[Line]:
    """The server admin log's and the chat bot's IRC servers accept a connection (TLS verified when used)."""
    targets = []
    if root.has("sal"):
        targets.append(("irc sal", "sal", root.section("sal"), "irc_host", "irc_port"))
    chatops = root.section("chatops", {})
    if chatops.has("irc"):
        targets.append(("irc chatops", "chatops.irc", chatops.section("irc"), "host", "port"))
    for what, key, section, host_key, port_key in targets:
        try:
            host, port, tls = _irc(section, host_key, port_key)
            with socket.create_connection((host, port), timeout=10) as sock:
                if tls is not None:
                    with tls.wrap_socket(sock, server_hostname=host):
                        pass
            yield Line(True, what, f"{host}:{port} accepts a connection" + (", TLS verified" if tls else
                                                                            " (plain text)"))
        except (OSError, LibclusterError) as exc:
            yield Line(False, what, f"{type(exc).__name__}: {exc}",
                       f"check {key}.{host_key}/{port_key} (and tls, ca_file) and that the IRC server runs")


CHECKS: tuple[Callable[[config.Section], Iterator[Line]], ...] = (
    check_ganeti, check_netbox, check_dns, check_etcd, check_irc)
"""The service checks, in the order they are printed (after the files)."""


def run(path: str | Path, out: TextIO = sys.stdout) -> int:
    """Print one line per check; 0 when every one is OK, 1 otherwise."""
    path = Path(path)
    try:
        root = config.load(path)
        checks: list[Callable[[], Iterator[Line]]] = [
            lambda: check_files(root, path), *[functools.partial(check, root) for check in CHECKS]]
    except ConfigError as exc:
        print(Line(False, "config", str(exc), "see config/config.example.yaml").render(), file=out)
        return 1
    failed = 0
    for check in checks:
        try:
            for line in check():
                failed += not line.ok
                print(line.render(), file=out, flush=True)
        except LibclusterError as exc:
            failed += 1
            print(Line(False, "config", str(exc), "see config/config.example.yaml").render(), file=out, flush=True)
    print(f"{'all checks passed' if not failed else f'{failed} check(s) failed'}", file=out)
    return 1 if failed else 0
