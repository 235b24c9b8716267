"""``${env:NAME}`` references: values that come from the environment and are never written down.

A params or config file may say ``token: ${env:API_TOKEN}``. What nbmill records, injects and
sends is the reference; the value reaches a notebook only through its kernel's environment (the
injected cell reads ``os.environ["API_TOKEN"]``).
"""

from __future__ import annotations

import os
import re

REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


class EnvRef(str):
    """The text ``${env:NAME}``; ``value()`` reads the environment when the secret is needed."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return REFERENCE.match(self)[1]

    def value(self) -> str | None:
        return os.environ.get(self.name) or None


def env_ref(value: object) -> EnvRef | None:
    """The reference in ``value`` if it is exactly ``${env:NAME}``, else None."""
    if isinstance(value, str) and REFERENCE.match(value.strip()):
        return EnvRef(value.strip())
    return None


def python_source(ref: EnvRef) -> str:
    """Python that reads the secret in the kernel, for the injected parameters cell."""
    return f"__import__('os').environ[{ref.name!r}]"


def install_papermill_translator() -> None:
    """Teach papermill to inject an EnvRef as an environment lookup instead of its text."""
    from papermill.translators import PythonTranslator, papermill_translators

    class SecretAwarePythonTranslator(PythonTranslator):
        @classmethod
        def translate_str(cls, val):
            if isinstance(val, EnvRef):
                return python_source(val)
            return super().translate_str(val)

    papermill_translators.register("python", SecretAwarePythonTranslator)
