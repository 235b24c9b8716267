"""Anchors: the archive ledger's head (``SEQ:HASH``) kept where the archive's writers cannot
rewrite it, so a ledger rewritten whole, every hash recomputed, is still caught.

After a run's final event is appended to the archive's ledger, its entry is the chain's head at
that moment. It is kept as the tag ``nbmill.ledger.anchor`` of the run's MLflow run (the
workspace's tracking store on Azure; the archive's storage key does not reach it) and, inside
Azure Pipelines, as a build tag ``nbmill-ledger-SEQ-HASH``. ``check`` compares anchors with the
archive's chain: the entry at SEQ must still have HASH."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

TAG = "nbmill.ledger.anchor"
BUILD_TAG = "nbmill-ledger-{seq}-{hash}"
MLFLOW_JSON = "mlflow.json"


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    where: str  # where it was kept (an MLflow run, a build tag, the command line)

    @classmethod
    def parse(cls, text: str, where: str) -> Anchor:
        """``SEQ:HASH`` (a tag) or ``nbmill-ledger-SEQ-HASH`` (a build tag)."""
        body = text.strip().removeprefix("nbmill-ledger-").replace("-", ":", 1)
        seq, _, digest = body.partition(":")
        if not seq.isdigit() or len(digest) < 12:
            raise ValueError(f"{where}: {text!r} is not an anchor (SEQ:HASH)")
        return cls(int(seq), digest, where)


def keep(entry: dict[str, Any], run_dir: str | None, stdout: TextIO) -> list[str]:
    """Keep ``entry`` (a run's final event, as appended) as the run's anchors; returns where."""
    kept = []
    anchor = f"{entry['seq']}:{entry['hash']}"
    info = Path(run_dir) / MLFLOW_JSON if run_dir else None
    if info is not None and info.is_file():
        mlflow_run = json.loads(info.read_text(encoding="utf-8"))
        from mlflow.tracking import MlflowClient

        MlflowClient(mlflow_run["tracking_uri"]).set_tag(mlflow_run["run_id"], TAG, anchor)
        kept.append(f"MLflow run {mlflow_run['run_id']}")
    if os.environ.get("TF_BUILD"):
        tag = BUILD_TAG.format(seq=entry["seq"], hash=entry["hash"][:32])
        stdout.write(f"##vso[build.addbuildtag]{tag}\n")
        stdout.flush()
        kept.append(f"build tag {tag}")
    return kept


def from_mlflow(mlflow_runs: list[dict[str, str]]) -> tuple[list[Anchor], list[str]]:
    """The anchors on these MLflow runs (``mlflow.json`` contents), and what could not be read."""
    anchors, unread = [], []
    clients: dict[str, Any] = {}
    for info in mlflow_runs:
        where = f"MLflow run {info['run_id']}"
        try:
            from mlflow.tracking import MlflowClient

            uri = info["tracking_uri"]
            client = clients.setdefault(uri, MlflowClient(uri))
            tag = client.get_run(info["run_id"]).data.tags.get(TAG)
        except Exception as exc:  # noqa: BLE001 - said: an anchor not checked is not a pass
            unread.append(f"{where}: anchor not read ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        if tag:
            anchors.append(Anchor.parse(tag, where))
    return anchors, unread


def check(anchors: list[Anchor], chain: list[dict[str, Any]], where: str) -> list[str]:
    """What the anchors say is wrong with ``chain`` (nothing: each matches its entry)."""
    problems = []
    for anchor in anchors:
        if anchor.seq > len(chain):
            problems.append(
                f"{where}: anchor {anchor.seq}:{anchor.hash[:12]} ({anchor.where}) is past the "
                f"ledger's end ({len(chain)} entries): entries were removed"
            )
        elif not chain[anchor.seq - 1]["hash"].startswith(anchor.hash):
            problems.append(
                f"{where}: entry {anchor.seq} is not the one anchored in {anchor.where} "
                f"({anchor.hash[:12]}): the ledger was rewritten"
            )
    return problems
