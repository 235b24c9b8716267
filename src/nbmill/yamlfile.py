"""Reading nbmill's YAML files (pipelines, params, nbmill.yml) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nbmill.errors import NbmillError


def load_yaml(path: Path, what: str, error: type[NbmillError] = NbmillError) -> Any:
    """Parse ``path``; a missing file or bad YAML raises ``error`` naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def reject_unknown(
    raw: dict,
    allowed: set[str],
    at: str,
    error: type[NbmillError],
    word: str = "field",
    hint: str = "",
) -> None:
    """Raise ``error`` naming the first key of ``raw`` that is not in ``allowed``."""
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise error(
            f"{at}: unknown {word} '{unknown[0]}' (allowed: {', '.join(sorted(allowed))}"
            f"{'; ' + hint if hint else ''})"
        )
