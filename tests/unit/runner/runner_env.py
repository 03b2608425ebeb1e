"""The Env helper of the runner tests: a config in a temp dir and readers of its logs and audit records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from libcluster import audit


@dataclass
class Env:
    """A configuration in a temp dir and where its logs, audit log and locks go."""

    tmp: Path
    config: Path
    logs: Path
    audit: Path
    locks: Path

    def write(self, **overrides: Any) -> Path:
        """Rewrite the config with top-level keys replaced (None removes a key)."""
        data = yaml.safe_load(self.config.read_text())
        for key, value in overrides.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self.config.write_text(yaml.safe_dump(data))
        return self.config

    def records(self) -> list[dict[str, Any]]:
        """The audit records (end lines) written so far."""
        return audit.read_records(self.audit)

    def lines(self) -> list[dict[str, Any]]:
        """Every journal line written so far (start, intent, result, undo, end...)."""
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def log(self, name: str, extended: bool = False) -> str:
        """Text of a cookbook's INFO (or DEBUG) log file."""
        *groups, leaf = name.split(".")
        path = self.logs.joinpath(*groups, f"{leaf}{'-extended' if extended else ''}.log")
        return path.read_text()
