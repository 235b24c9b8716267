"""A registered model named on the command line or in a notebook: ``NAME@ALIAS`` (the version
holding the alias) or ``NAME/VERSION``, with MLflow's ``models:/`` prefix allowed. One parser,
pure (no MLflow import)."""

from __future__ import annotations

from dataclasses import dataclass

from nbmill.errors import NbmillError


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def is_model_ref(text: str) -> bool:
    """Whether ``text`` has the shape of a registered model's name (not whether it exists)."""
    try:
        parse_ref(text)
    except NbmillError:
        return False
    return True


def parse_ref(text: str) -> ModelRef:
    """``NAME@ALIAS`` or ``NAME/VERSION``; NbmillError saying which forms are taken."""
    bare = str(text).removeprefix("models:/")
    if "@" in bare:
        name, _, alias = bare.partition("@")
        if name and alias and "/" not in name:
            return ModelRef(name, alias=alias)
    elif "/" in bare:
        name, _, version = bare.rpartition("/")
        if name and version:
            return ModelRef(name, version=version)
    raise NbmillError(f"'{text}': not a registered model as NAME@ALIAS or NAME/VERSION")
