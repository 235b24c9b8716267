"""Azure DevOps logging commands, written to stdout when running inside Azure Pipelines.

Failures and drift become issues in the build summary, runs and models become build tags, and a
finished run's record is uploaded as a build artifact.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TextIO


def active(sinks: Iterable[Any] = ()) -> bool:
    """On inside Azure Pipelines (TF_BUILD), or where a sink of this type is configured."""
    return os.environ.get("TF_BUILD", "").lower() == "true" or any(
        getattr(s, "type", None) == "azure-devops" for s in sinks
    )


def escape_message(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A").replace("]", "%5D")


def escape_property(text: str) -> str:
    return escape_message(text).replace(";", "%3B")


def commands(event: dict[str, Any]) -> list[str]:
    kind, data = event["type"], event.get("data", {})
    lines: list[str] = []
    if kind in ("nbmill.run.failed", "nbmill.step.failed"):
        error = data.get("error") or {}
        message = (
            f"nbmill {data.get('run_id', '')}: step '{error.get('step', data.get('step'))}' "
            f"failed: {error.get('type', '')}: {error.get('message', '')}"
        )
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
