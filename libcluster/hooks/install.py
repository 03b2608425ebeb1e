"""What install-hooks puts on each node, and the shell program that puts it there only where it differs.

On each node, under hooks_dir (/etc/ganeti/hooks):
- ``cookbook-event``: the hook script (hooks/cookbook-event of this repository), mode 0755;
- ``cookbook-event.conf``: its settings as shell assignments, mode 0600 (it holds the nodes' etcd password);
- ``cookbook-event-ca.crt``: the CA of etcd's certificate (hooks.node_etcd_ca_file), mode 0600, when one is set;
- ``<hook>-post.d/50-cookbook-event``: a link to ``../cookbook-event`` for every hook of HOOKS.

Only post-phase hooks are installed: the agent acts on what Ganeti did, and a pre-phase hook that
failed would block the job. The program compares before writing (cmp, mode, readlink), writes
atomically (temporary file made with umask 077, mv), prints one ``changed: PATH`` line per change and a last
``hooks: done`` line, so a second run changes nothing; with check only, it writes nothing and
prints what would change (safe in dry-run). The removal program takes the links, the script and
its settings away the same way. The programs carry the files base64-encoded on their command line;
those encodings are registered as secrets (libcluster.redact), so logs, output and the audit record
show them masked.
"""

from __future__ import annotations

import base64
import shlex

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


def program(script: str, conf: str, settings: HookSettings, *, check: bool, ca: str | None = None) -> str:
    """A POSIX sh command line that installs script, conf (and the CA) and links them in, or only reports (check)."""
    base = shlex.quote(settings.hooks_dir.rstrip("/"))
    files = [(f"{base}/{SCRIPT_NAME}", "755", script), (f"{base}/{SCRIPT_NAME}.conf", "600", conf)]
    if ca is not None:
        files.append((f"{base}/{CA_NAME}", "600", ca))
    lines = [
        f"apply={0 if check else 1}",
        'put() { if [ -f "$1" ] && [ "$(stat -c %a "$1")" = "$2" ] && printf %s "$3" | base64 -d | cmp -s - "$1"; '
        f'then return 0; fi; echo "{CHANGED}$1"; [ "$apply" = 1 ] || return 0; '
        '(umask 077; printf %s "$3" | base64 -d > "$1.tmp.$$") && chmod "$2" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }',
        f'link() {{ [ "$(readlink "$1" 2>/dev/null)" = "../{SCRIPT_NAME}" ] && return 0; echo "{CHANGED}$1"; '
        f'[ "$apply" = 1 ] || return 0; mkdir -p "$(dirname "$1")" && ln -sfn ../{SCRIPT_NAME} "$1"; }}',
        f'[ "$apply" = 1 ] && mkdir -p {base}',
    ]
    redact.register(base64.b64encode(conf.encode()).decode())  # the conf holds the nodes' etcd password
    lines += [f"put {path} {mode} {base64.b64encode(text.encode()).decode()}" for path, mode, text in files]
    lines += [f"link {base}/{hook}-post.d/{LINK_NAME}" for hook in HOOKS]
    lines.append(f'echo "{DONE}"')
    return "; ".join(lines)


def removal(settings: HookSettings, *, check: bool) -> str:
    """A POSIX sh command line that removes the links, the script and its settings (or only reports, check)."""
    base = shlex.quote(settings.hooks_dir.rstrip("/"))
    paths = [f"{base}/{hook}-post.d/{LINK_NAME}" for hook in HOOKS]
    paths += [f"{base}/{SCRIPT_NAME}", f"{base}/{SCRIPT_NAME}.conf", f"{base}/{CA_NAME}"]
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
