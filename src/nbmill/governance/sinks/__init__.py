"""Notification sinks: one interface (``base.Sink``), one module per kind, and the registry that
maps nbmill.yml's ``type:`` to its kind. Adding a kind is one module plus one line in ``KINDS``
(and its type in ``project.config.SINK_TYPES``, which nbmill.yml is checked against when it is
read: ``project`` does not import ``governance``, and a test keeps the two lists agreeing).

    webhook        webhook.py        POST the CloudEvent, or a Teams or Slack message
    azure-devops   azure_devops.py   logging commands on stdout (on by itself in Azure Pipelines)
    openlineage    openlineage.py    RunEvents to a lineage server such as Marquez
    archive        archive/sink.py   the archive's shared ledger (on by itself with an archive)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TextIO

from nbmill.governance.sinks.base import DeliveryError, Sink
from nbmill.project.config import ConfigError, SinkConfig

__all__ = ["IMPLICIT", "KINDS", "DeliveryError", "Sink", "kind_for", "open_sinks", "register"]

# Each type to its kind, as "module:class": a kind's module (and its heavy imports, such as the
# OpenLineage client) loads only where a sink of that type is configured.
KINDS: dict[str, str | type[Sink]] = {
    "webhook": "nbmill.governance.sinks.webhook:Webhook",
    "azure-devops": "nbmill.governance.sinks.azure_devops:AzureDevOps",
    "openlineage": "nbmill.governance.sinks.openlineage:OpenLineage",
    "archive": "nbmill.archive.sink:ArchiveSink",
}
# The kinds asked for a sink of their own (``Sink.implicit``) where none of theirs is configured.
IMPLICIT: tuple[str, ...] = ("azure-devops",)


def register(sink_type: str, kind: type[Sink] | str) -> None:
    """Add a kind for ``type: <sink_type>``: a Sink subclass, or "module:class" to load it on
    first use. A type already taken is refused: a kind is replaced by editing ``KINDS``."""
    if sink_type in KINDS:
        raise ValueError(f"sink type '{sink_type}' is already registered ({KINDS[sink_type]})")
    if not (isinstance(kind, str) and ":" in kind) and not (
        isinstance(kind, type) and issubclass(kind, Sink)
    ):
        raise TypeError(f"sink type '{sink_type}': expected a Sink subclass or 'module:class'")
    KINDS[sink_type] = kind


def kind_for(sink_type: str) -> type[Sink]:
    """The kind that sends to sinks of this type; ConfigError naming the known types if none."""
    kind = KINDS.get(sink_type)
    if kind is None:
        raise ConfigError(
            f"no sink kind for type '{sink_type}' (types: {', '.join(KINDS)}); use one of "
            "them, or register the kind with nbmill.governance.sinks.register"
        )
    if isinstance(kind, str):
        module, _, name = kind.partition(":")
        kind = getattr(importlib.import_module(module), name)
    return kind


def open_sinks(configs: Iterable[SinkConfig], stdout: TextIO) -> list[Sink]:
    """A sink for each configured entry, in order, then those the ``IMPLICIT`` kinds switch on
    by themselves where no sink of their type is configured."""
    configs = list(configs)
    for sink_type in IMPLICIT:
        if all(c.type != sink_type for c in configs):
            implicit = kind_for(sink_type).implicit()
            configs += [implicit] if implicit is not None else []
    sinks = []
    for config in configs:
        try:
            kind = kind_for(config.type)
        except ConfigError as exc:
            raise ConfigError(f"notify '{config.name}': {exc}") from None
        sinks.append(kind(config, stdout))
    return sinks
