"""Who approved a stage of an Azure Pipelines run: the approvals of the environment it deploys
to, read from Azure DevOps' REST API with the job's access token (``System.AccessToken``).

The build's timeline lists each approval as a record of type ``Checkpoint.Approval`` whose id
is the approval's, under the checkpoint of the stage it gated; the approval, expanded, names
who approved it (``steps[].actualApprover``) and their comment. ``python -m
nbmill.governance.approvals`` prints them for a pipeline step, which passes them to ``nbmill
models promote --approved-by`` so that the ledger says who let the version into production.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from nbmill.errors import NbmillError

API_VERSION = "7.1"
APPROVAL = "Checkpoint.Approval"


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)
    except (OSError, ValueError) as exc:
        raise NbmillError(f"Azure DevOps: GET {url.split('?')[0]}: {exc}") from None


def _stage_of(record: Mapping, records: Mapping[str, Mapping]) -> str | None:
    """The identifier of the stage a timeline record is under."""
    seen = set()
    while record is not None and record.get("id") not in seen:
        seen.add(record.get("id"))
        if record.get("type") == "Stage":
            return record.get("identifier") or record.get("name")
        record = records.get(record.get("parentId") or "")
    return None


def approvers(
    collection_uri: str, project: str, build_id: str, token: str, stage: str | None = None
) -> list[str]:
    """``Name <unique name>: comment`` of each who approved the build's approvals (those of
    ``stage`` only, when given), in the order they approved."""
    base = collection_uri.rstrip("/") + "/" + urllib.parse.quote(project)
    timeline = _get(
        f"{base}/_apis/build/builds/{build_id}/timeline?api-version={API_VERSION}", token
    )
    records = {r.get("id"): r for r in timeline.get("records") or []}
    ids = [
        r["id"]
        for r in records.values()
        if r.get("type") == APPROVAL and (stage is None or _stage_of(r, records) == stage)
    ]
    found: list[tuple[str, str]] = []
    for approval_id in ids:
        approval = _get(
            f"{base}/_apis/pipelines/approvals/{approval_id}?$expand=steps"
            f"&api-version={API_VERSION}",
            token,
        )
        for step in approval.get("steps") or []:
            person = step.get("actualApprover") or {}
            if step.get("status") != "approved" or not person:
                continue
            name = person.get("displayName") or person.get("uniqueName") or "unknown"
            unique = person.get("uniqueName")
            text = f"{name} <{unique}>" if unique and unique != name else name
            if step.get("comment"):
                text += f": {step['comment']}"
            found.append((step.get("lastModifiedOn") or "", text))
    return [text for _, text in sorted(found)]


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Print the approvers of this stage (Azure Pipelines' variables) on one line; exit 1,
    naming the missing variable or the failure, when they cannot be read."""
    needed = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID", "SYSTEM_ACCESSTOKEN")
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        print(
            f"error: {', '.join(missing)} not set (map System.AccessToken into env)",
            file=sys.stderr,
        )
        return 1
    try:
        found = approvers(
            environ["SYSTEM_COLLECTIONURI"],
            environ["SYSTEM_TEAMPROJECT"],
            environ["BUILD_BUILDID"],
            environ["SYSTEM_ACCESSTOKEN"],
            environ.get("SYSTEM_STAGENAME") or None,
        )
    except NbmillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("error: no approval of this stage was found in the build's timeline", file=sys.stderr)
        return 1
    print("; ".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
