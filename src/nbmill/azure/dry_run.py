"""A dry run: what an Azure ML command would submit, written as YAML, loaded back with the
SDK's own loaders and checked; nothing is submitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FOLDER = "dry-run"  # in the runs folder, unless the caller says where


@dataclass(frozen=True)
class DryRun:
    """What was written (a file or a folder), and what the checks found (nothing: valid)."""

    kind: str
    written: Path
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "written": str(self.written), "valid": self.valid,
                "problems": self.problems}  # fmt: skip


def out_dir(out: str | Path | None, runs_dir: Path) -> Path:
    """Where a dry run writes: ``out``, else ``<runs>/dry-run``."""
    return Path(out) if out else Path(runs_dir) / FOLDER
