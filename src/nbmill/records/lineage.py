"""Lineage: from a run (or a model version, a deployment, a collected request) back to its
data, code, notebooks, environment, the gate decision and the deployments that served it.

Every link carries the sha256 it claims and whether that still holds (``ok``): a file that no
longer matches its recorded hash is shown as broken, never hidden. The chain is built from the
run record and the ledger only; the registry part (``NAME@ALIAS``) is joined by the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nbmill._hashing import sha256_file
from nbmill.errors import NbmillError
from nbmill.project.spec import within
from nbmill.records.runjson import GATE, MODEL, PACKAGE, RUN_JSON, products, read

MODEL_EVENTS = ("nbmill.model.registered", "nbmill.model.promoted", "nbmill.model.deployed")


@dataclass(frozen=True)
class Link:
    kind: str  # model, run, notebook, data, commit, environment, gate, deployment, reproduction
    label: str
    detail: str = ""
    sha256: str | None = None
    ok: bool | None = None  # None: nothing to check

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_link(
    kind: str, run_dir: Path, rel: str, recorded: str | None, detail: str = "", check: bool = True
) -> Link:
    path = run_dir / rel
    if not check:  # the record is being sealed: its hashes are being made
        return Link(kind, rel, detail, sha256_file(path) if path.is_file() else recorded, None)
    if recorded is None:
        return Link(kind, rel, detail or "not in the record's hashes", None, False)
    if not path.is_file():
        return Link(kind, rel, detail or "missing", recorded, False)
    actual = sha256_file(path)
    note = detail if actual == recorded else f"changed: now {actual[:12]}"
    return Link(kind, rel, note, recorded, actual == recorded)


def run_chain(
    run_dir: Path,
    events: list[dict[str, Any]],
    check: bool = True,
    run: dict[str, Any] | None = None,
) -> list[Link]:
    """The run's links: the run itself, each step's executed notebook, the data each step read,
    the commit, the environment, the gate, the model versions it registered and their
    deployments. ``check``: compare each file with the sha256 the record holds (False while the
    record is sealed, before it holds them). ``run``: its run.json, if already read.

    Only hashes are judged (``ok``); the commit's state and the run's status are in the detail
    (a dirty tree is said, not marked broken)."""
    run_dir = Path(run_dir)
    if run is None:
        if not (run_dir / RUN_JSON).is_file():
            raise NbmillError(f"{run_dir}: no {RUN_JSON}; not a run folder")
        run = read(run_dir)
    files: dict[str, str] = run.get("files") or {}
    links = [
        Link(
            "run",
            run["id"],
            f"{run.get('pipeline', {}).get('name')} {run.get('status')}, by {run.get('who')} "
            f"at {run.get('started_at')}: {run.get('why') or 'no reason given'}",
        )
    ]
    if run.get("reproduces"):
        links.append(Link("reproduction", run["reproduces"], "this run reproduces it"))
    for step, entry in (run.get("steps") or {}).items():
        executed = entry.get("executed")
        if executed:
            rel = f"notebooks/{step}.ipynb"
            links.append(
                _file_link("notebook", run_dir, rel, files.get(rel), f"step {step}", check)
            )
    seen = set()
    made = [*products(run, MODEL), *products(run, PACKAGE)]  # the run's own, not data it read
    for step, entry in (run.get("steps") or {}).items():
        for rel, digest in (entry.get("inputs") or {}).items():
            if rel in seen or any(within(rel, path) for path in made):
                continue
            seen.add(rel)
            links.append(_file_link("data", run_dir, rel, digest, f"read by {step}", check))
    git = run.get("git") or {}
    state = "dirty tree: uncommitted changes when it ran" if git.get("dirty") else "clean tree"
    branch = git.get("branch") or ""
    links.append(Link("commit", git.get("commit") or "unknown", f"{branch} {state}".strip()))
    environment = run.get("environment") or {}
    links.append(
        Link(
            "environment",
            environment.get("fingerprint") or "unknown",
            f"{environment.get('packages', '?')} packages",
            environment.get("fingerprint"),
        )  # fmt: skip
    )
    links += [_gate_link(run_dir, rel, files, check) for rel in products(run, GATE)]
    links += _model_links(run["id"], events)
    return links


def _gate_link(run_dir: Path, rel: str, files: dict[str, str], check: bool) -> Link:
    """The gate decision the run recorded (``tracking.record_product("gate", ...)``)."""
    gate = _file_link("gate", run_dir, rel, files.get(rel), "", check)
    if gate.ok or (not check and gate.sha256):
        import json

        decision = json.loads((run_dir / rel).read_text(encoding="utf-8"))
        verdict = "promoted" if decision.get("promoted") else "not promoted"
        gate = Link("gate", f"version {decision.get('candidate_version')} {verdict}",
                    decision.get("reason", ""), gate.sha256, gate.ok)  # fmt: skip
    return gate


def _model_links(run_id: str, events: list[dict]) -> list[Link]:
    links = []
    mine = [e for e in events if e["type"] in MODEL_EVENTS and e["data"].get("run_id") == run_id]
    versions = sorted({(e["data"]["model"], str(e["data"]["version"])) for e in mine})
    for name, version in versions:
        for event in mine:
            data = event["data"]
            if event["type"] == "nbmill.model.registered" and str(data.get("version")) == version:
                links.append(
                    Link(
                        "model",
                        f"{name}/{version}",
                        f"registered at {event['time']} by {data.get('who')}",
                        data.get("artifacts_sha256"),
                        None,
                    )  # fmt: skip
                )
        links += deployments(events, name, version)
    return links


def deployments(events: list[dict[str, Any]], name: str, version: str) -> list[Link]:
    """Each deployment of ``name/version``, from when it was deployed to when the same target
    got another version (or until now)."""
    deployed = [
        e for e in events if e["type"] == "nbmill.model.deployed" and e["data"].get("model") == name
    ]
    links = []
    for index, event in enumerate(deployed):
        if str(event["data"].get("version")) != version:
            continue
        target = event["data"].get("target", "local")
        after = [e for e in deployed[index + 1 :] if e["data"].get("target", "local") == target]
        until = after[0]["time"] if after else "now"
        links.append(
            Link(
                "deployment",
                f"{target}: {name}/{version}",
                f"served {event['time']} to {until}",
                event["data"].get("model_sha256"),
                None,
            )  # fmt: skip
        )
    return links


def reproductions(events: list[dict[str, Any]], run_id: str) -> list[Link]:
    """The reproductions of ``run_id`` the ledger records (``nbmill.run.reproduced``)."""
    return [
        Link(
            "reproduction",
            e["data"].get("reproduction", ""),
            f"at {e['time']}: every metric "
            + ("equal" if e["data"].get("metrics_equal") else "not equal")
            + f"; {e['data'].get('reproduction_dir', '')}",
        )
        for e in events
        if e["type"] == "nbmill.run.reproduced" and e["data"].get("run_id") == run_id
    ]


def broken(links: list[Link]) -> list[Link]:
    """The links whose hash no longer holds."""
    return [link for link in links if link.ok is False]


def as_text(target: str, links: list[Link]) -> str:
    """The chain, one link a line: a hash that no longer holds is BROKEN."""
    width = max((len(link.kind) for link in links), default=4)
    lines = [f"lineage of {target}"]
    for link in links:
        mark = {None: "", True: "ok", False: "BROKEN"}[link.ok]
        digest = f" sha256 {link.sha256[:16]}" if link.sha256 else ""
        lines.append(
            f"  {link.kind:<{width}}  {link.label}{digest}  {link.detail}  {mark}".rstrip()
        )
    return "\n".join(lines)
