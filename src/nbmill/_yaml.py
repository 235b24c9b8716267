"""Reading nbmill's YAML files (pipelines, params, nbmill.yml) with errors that name the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nbmill.errors import NbmillError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def parameter_mapping(value: Any, at: str, error: type[NbmillError]) -> dict[str, Any]:
    """A mapping of Python parameter names to values (None is empty), or ``error`` naming the
    first key that is not a valid name."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(f"{at} must be a mapping of parameter name to value")
    for key in value:
        if not isinstance(key, str) or not IDENTIFIER.match(key):
            raise error(f"{at}: '{key}' is not a valid Python parameter name")
    return dict(value)
