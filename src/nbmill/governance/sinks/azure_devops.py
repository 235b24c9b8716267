"""Azure DevOps logging commands, written at once to stdout, where Azure Pipelines reads them.

Failures and drift become issues in the build summary, runs and models become build tags, and a
finished run's record is uploaded as a build artifact. The sink is on where one of type
``azure-devops`` is configured, and by itself inside Azure Pipelines (``TF_BUILD``).
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from nbmill.governance.sinks.base import DeliveryError, Sink
from nbmill.project.config import SinkConfig

TYPE = "azure-devops"


def inside_azure_pipelines() -> bool:
    """Whether this process runs in an Azure Pipelines job, which sets TF_BUILD=True."""
    return os.environ.get("TF_BUILD", "").lower() == "true"


class AzureDevOps(Sink):
    """Logging commands on the Notifier's stdout: nothing to spool, nothing to retry."""

    background = False

    @classmethod
    def implicit(cls) -> SinkConfig | None:
        """Inside Azure Pipelines, a sink of its own, taking every event, with none configured."""
        return SinkConfig(TYPE, TYPE, retries=0) if inside_azure_pipelines() else None

    def send(self, event: dict[str, Any]) -> None:
        """Write the event's logging commands, if it has any (runs, failures, drift, models)."""
        try:
            write(event, self.stdout)
        except (OSError, ValueError) as exc:  # stdout closed, or a pipe nobody reads any more
            raise DeliveryError(f"stdout: {type(exc).__name__}: {exc}") from None


def escape_message(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A").replace("]", "%5D")


def escape_property(text: str) -> str:
    return escape_message(text).replace(";", "%3B")


def commands(event: dict[str, Any]) -> list[str]:
    kind, data = event["type"], event.get("data", {})
    lines: list[str] = []
    if kind in ("nbmill.run.failed", "nbmill.step.failed"):
        error = data.get("error") or {}
        if isinstance(error, dict):
            step = error.get("step", data.get("step"))
            what = f"{error.get('type', '')}: {error.get('message', '')}"
        else:  # a text, not the runner's {step, type, message}
            step, what = data.get("step"), str(error)
        where = f"step '{step}' failed" if step else "failed"
        message = f"nbmill {data.get('run_id', '')}: {where}: {what}"
        lines.append(f"##vso[task.logissue type=error]{escape_message(message)}")
    elif kind == "nbmill.drift.detected":
        message = f"nbmill: drift detected on {event.get('subject', '')}"
        lines.append(f"##vso[task.logissue type=warning]{escape_message(message)}")
    if kind in ("nbmill.run.completed", "nbmill.run.failed"):
        status = "completed" if kind.endswith("completed") else "failed"
        lines.append(f"##vso[build.addbuildtag]{escape_message(f'nbmill-run-{status}')}")
        if data.get("run_dir"):
            name = escape_property(f"nbmill-run-{data.get('run_id', '')}")
            lines.append(
                f"##vso[artifact.upload containerfolder={name};artifactname={name}]"
                f"{escape_message(data['run_dir'])}"
            )
    if kind in ("nbmill.model.registered", "nbmill.model.promoted", "nbmill.model.deployed"):
        tag = f"{data.get('model', 'model')}-v{data.get('version', '')}"
        if data.get("alias"):
            tag += f"-{data['alias']}"
        lines.append(f"##vso[build.addbuildtag]{escape_message(tag)}")
    return lines


def write(event: dict[str, Any], stream: TextIO) -> None:
    for line in commands(event):
        stream.write(line + "\n")
    stream.flush()
