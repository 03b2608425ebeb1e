"""What install-hooks puts on each node, and the shell programs that put it there only where it differs.

On each node, under hooks_dir (/etc/ganeti/hooks):
- ``cookbook-event``: the hook script (hooks/cookbook-event of this repository), mode 0755;
- ``cookbook-event.conf``: its settings as shell assignments, mode 0600 (it holds the nodes' etcd password);
- ``cookbook-event-ca.crt``: the CA of etcd's certificate (hooks.node_etcd_ca_file), mode 0600, when one is set;
- ``<hook>-post.d/50-cookbook-event``: a link to ``../cookbook-event`` for every hook of HOOKS;
and hooks.cron_file (``/etc/cron.d/cookbook-event``, mode 0644; none when set to ""): every minute it runs
``cookbook-event --flush``, so a node that runs no more hooks (a former master) still sends its spool.

Only post-phase hooks are installed: the agent acts on what Ganeti did, and a pre-phase hook that
failed would block the job. ``program`` compares (sha256 and mode of each file, readlink), prints one
``changed: PATH`` line per difference and a last ``hooks: done`` line, and (unless check) makes the
links; it carries only the files' digests, never their content. Each file that differs is then sent
by ``write_program`` on its stdin (over ssh, see the install-hooks cookbook) and written atomically
(a temporary file made with umask 077, its mode, mv): no file, and so no password, is ever on a
command line on this host or on a node. A second run changes nothing; in dry-run only the comparison
runs. The removal program takes the links, the script, its settings and the cron entry away the same
way. The digest of the settings file is registered as a secret (libcluster.redact): logs, output
and the audit record show it masked.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from libcluster import redact
from libcluster.hooks.events import HookSettings

HOOKS = ("instance-add", "instance-remove", "instance-rename", "instance-modify", "instance-migrate",
         "instance-failover", "instance-start", "instance-stop", "disk-grow")
"""Ganeti hook paths (3.0) after which an instance's NetBox record or DNS records may need to change."""

SCRIPT_NAME = "cookbook-event"
CA_NAME = "cookbook-event-ca.crt"
LINK_NAME = "50-cookbook-event"
CHANGED = "changed: "
DONE = "hooks: done"


def render_conf(cluster: str, settings: HookSettings) -> str:
    """The hook's settings file for a cluster (its name in the configuration) as shell assignments."""
    node = settings.node_etcd
    values = {
        "CLUSTER": cluster,
        "ETCD_URL": node.url,
        "ETCD_CA": f"{settings.hooks_dir.rstrip('/')}/{CA_NAME}" if node.ca_file else "",
        "ETCD_USER": node.user or "",
        "ETCD_PASSWORD": node.password or "",
        "PREFIX": settings.prefix,
        "TTL": str(settings.event_ttl),
        "LOG": settings.log_file,
        "SPOOL": settings.spool_dir,
    }
    lines = ["# Written by `cookbook sre.ganeti.install-hooks`; read by cookbook-event."]
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class File:
    """One file install-hooks puts on a node: its path, mode (octal digits) and content."""

    path: str
    mode: str
    content: str

    @property
    def digest(self) -> str:
        """The sha256 of the content, which the nodes compare with (the content never is on a command line)."""
        return hashlib.sha256(self.content.encode()).hexdigest()


def render_cron(settings: HookSettings) -> str:
    """The cron.d file that sends the spool every minute, so a node that runs no more hooks still sends it."""
    script = shlex.quote(f"{settings.hooks_dir.rstrip('/')}/{SCRIPT_NAME}")
    return ("# Written by `cookbook sre.ganeti.install-hooks`: send this node's spooled hook events every minute\n"
            "# (a former master that runs no more hooks still sends them).\n"
            f"* * * * * root [ -x {script} ] && timeout 55 {script} --flush >/dev/null 2>&1\n")


def files(script: str, conf: str, settings: HookSettings, *, ca: str | None = None) -> list[File]:
    """The files of a node: the hook script, its settings (root only), the CA when given, the cron.d entry."""
    base = settings.hooks_dir.rstrip("/")
    found = [File(f"{base}/{SCRIPT_NAME}", "755", script), File(f"{base}/{SCRIPT_NAME}.conf", "600", conf)]
    if ca is not None:
        found.append(File(f"{base}/{CA_NAME}", "600", ca))
    if settings.cron_file:
        found.append(File(settings.cron_file, "644", render_cron(settings)))
    redact.register(found[1].digest)  # a digest of the password's file would let one test guesses offline
    return found


def program(wanted: list[File], settings: HookSettings, *, check: bool) -> str:
    """A POSIX sh command line that reports the files that differ (sha256, mode) and the links that are missing,
    and unless check makes the links; it carries digests only, the files go through write_program."""
    base = shlex.quote(settings.hooks_dir.rstrip("/"))
    lines = [
        f"apply={0 if check else 1}",
        'put() { if [ -f "$1" ] && [ ! -L "$1" ] && [ "$(stat -c %a "$1")" = "$2" ] && '
        f'[ "$(sha256sum < "$1" | cut -d " " -f 1)" = "$3" ]; then return 0; fi; echo "{CHANGED}$1"; }}',
        f'link() {{ [ "$(readlink "$1" 2>/dev/null)" = "../{SCRIPT_NAME}" ] && return 0; echo "{CHANGED}$1"; '
        f'[ "$apply" = 1 ] || return 0; mkdir -p "$(dirname "$1")" && ln -sfn ../{SCRIPT_NAME} "$1"; }}',
        f'[ "$apply" = 1 ] && mkdir -p {base}',
    ]
    lines += [f"put {shlex.quote(file.path)} {file.mode} {file.digest}" for file in wanted]
    lines += [f"link {base}/{hook}-post.d/{LINK_NAME}" for hook in HOOKS]
    lines.append(f'echo "{DONE}"')
    return "; ".join(lines)


def write_program(file: File) -> str:
    """A POSIX sh command line that writes file from its stdin atomically (a root-only temporary file, then its
    mode, then mv), so the content is never on any command line."""
    path = shlex.quote(file.path)
    return (f'umask 077; t={path}.tmp.$$; mkdir -p "$(dirname {path})" && cat > "$t" && chmod {file.mode} "$t" && '
            f'mv -f "$t" {path} && echo "{CHANGED}"{path} && echo "{DONE}" || {{ rm -f "$t"; exit 1; }}')


def removal(settings: HookSettings, *, check: bool) -> str:
    """A POSIX sh command line that removes the links, the script and its settings (or only reports, check)."""
    base = shlex.quote(settings.hooks_dir.rstrip("/"))
    paths = [f"{base}/{hook}-post.d/{LINK_NAME}" for hook in HOOKS]
    paths += [f"{base}/{SCRIPT_NAME}", f"{base}/{SCRIPT_NAME}.conf", f"{base}/{CA_NAME}"]
    paths += [shlex.quote(settings.cron_file)] if settings.cron_file else []
    lines = [
        f"apply={0 if check else 1}",
        f'drop() {{ [ -e "$1" ] || [ -L "$1" ] || return 0; echo "{CHANGED}$1"; [ "$apply" = 1 ] && rm -f "$1"; }}',
    ]
    lines += [f"drop {path}" for path in paths]
    lines.append(f'echo "{DONE}"')
    return "; ".join(lines)


def changed(output: str) -> list[str]:
    """The paths a program run reported as changed (or to change); ValueError if it did not run to its end."""
    lines = output.splitlines()
    if DONE not in lines:
        raise ValueError(f"the hooks program did not finish: {output.strip()[-300:]!r}")
    return [line[len(CHANGED):] for line in lines if line.startswith(CHANGED)]
