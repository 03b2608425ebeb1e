"""`./dev demo` ends by printing what to type next, and those lines work as printed, in a fresh shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_the_lines_printed_by_the_demo_work_as_typed(lab_config: Path, tmp_path: Path) -> None:
    demo = subprocess.run(["./dev", "demo"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    print(demo.stdout, demo.stderr)
    assert demo.returncode == 0
    head, marker, tail = demo.stdout.partition("Next, in this directory, type")
    assert marker, "the demo prints no next steps"
    lines = [line.strip() for line in tail.splitlines()[1:] if line.strip()]
    assert lines[0] == f"export COOKBOOK_CONFIG={lab_config}"
    assert "cookbook -l -v sre.ganeti" in lines

    # A new login shell: no venv, no COOKBOOK_CONFIG, the runner not on PATH; each line echoed before it runs.
    script = "set -e\n" + "".join(f"echo '>>> {line}'\n{line}\n" for line in lines)
    typed = subprocess.run(["env", "-i", f"HOME={tmp_path}", f"PATH={SECURE_PATH}", "TERM=dumb", "bash", "-c", script],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    print(typed.stdout, typed.stderr)
    assert typed.returncode == 0
    listing, makevm_help, makevm = (part for part in typed.stdout.split(">>> ")[3:6])
    assert "sre.ganeti.makevm" in listing and "sre.ganeti.reboot-vm" in listing
    assert "--cluster CLUSTER" in makevm_help
    assert "DRY-RUN END (PASS) - Cookbook sre.ganeti.makevm (exit_code=0)" in typed.stderr
