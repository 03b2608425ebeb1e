"""What install-hooks puts on each node, and the shell program that puts it there only where it differs.

On each node, under hooks_dir (/etc/ganeti/hooks):
- ``cookbook-event``: the hook script (hooks/cookbook-event of this repository), mode 0755;
- ``cookbook-event.conf``: its settings as shell assignments, mode 0600;
- ``<hook>-post.d/50-cookbook-event``: a link to ``../cookbook-event`` for every hook of HOOKS.

Only post-phase hooks are installed: the agent acts on what Ganeti did, and a pre-phase hook that
failed would block the job. The program compares before writing (cmp, mode, readlink), writes
atomically (temporary file, mv), and prints one ``changed: ...`` line, so a second run changes
nothing; with check only, it writes nothing and prints what would change (safe in dry-run).
"""

from __future__ import annotations

import base64
import shlex

from libcluster.hooks.events import HookSettings

HOOKS = ("instance-add", "instance-remove", "instance-rename", "instance-modify", "instance-migrate",
         "instance-failover", "instance-start", "instance-stop", "disk-grow")
"""Ganeti hook paths (3.0) after which an instance's NetBox record or DNS records may need to change."""

SCRIPT_NAME = "cookbook-event"
LINK_NAME = "50-cookbook-event"
RESULT_PREFIX = "changed:"


def render_conf(cluster: str, settings: HookSettings) -> str:
    """The hook's settings file for a cluster (its name in the configuration) as shell assignments."""
    values = {
        "CLUSTER": cluster,
        "ETCD_URL": settings.node_etcd_url,
        "PREFIX": settings.prefix,
        "TTL": str(settings.event_ttl),
        "LOG": settings.log_file,
        "SPOOL": settings.spool_dir,
    }
    lines = ["# Written by `cookbook sre.ganeti.install-hooks`; read by cookbook-event."]
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def program(script: str, conf: str, settings: HookSettings, *, check: bool) -> str:
    """A POSIX sh command line that installs script and conf and links them in, or only reports (check)."""
    base = shlex.quote(settings.hooks_dir.rstrip("/"))
    apply = "0" if check else "1"
    files = [(f"{base}/{SCRIPT_NAME}", "755", script), (f"{base}/{SCRIPT_NAME}.conf", "600", conf)]
    lines = [
        f"apply={apply}; changed=",
        'put() { if [ -f "$1" ] && [ "$(stat -c %a "$1")" = "$2" ] && printf %s "$3" | base64 -d | cmp -s - "$1"; '
        'then return 0; fi; changed="$changed $1"; [ "$apply" = 1 ] || return 0; '
        'printf %s "$3" | base64 -d > "$1.tmp.$$" && chmod "$2" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }',
        'link() { [ "$(readlink "$1" 2>/dev/null)" = "../' + SCRIPT_NAME + '" ] && return 0; '
        'changed="$changed $1"; [ "$apply" = 1 ] || return 0; '
        'mkdir -p "$(dirname "$1")" && ln -sfn ../' + SCRIPT_NAME + ' "$1"; }',
        f'[ "$apply" = 1 ] && mkdir -p {base}',
    ]
    for path, mode, text in files:
        lines.append(f"put {path} {mode} {base64.b64encode(text.encode()).decode()}")
    for hook in HOOKS:
        lines.append(f"link {base}/{hook}-post.d/{LINK_NAME}")
    lines.append(f'echo "{RESULT_PREFIX}${{changed:- none}}"')
    return "; ".join(line.rstrip(";") for line in lines)


def changed(output: str) -> list[str]:
    """The paths a program run reported as changed (or to change), from its output."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return [path for path in line[len(RESULT_PREFIX):].split() if path != "none"]
    raise ValueError(f"no '{RESULT_PREFIX}' line in the output: {output.strip()[-300:]!r}")
