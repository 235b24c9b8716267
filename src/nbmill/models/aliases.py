"""Alias moves: the gate's, ``nbmill promote`` and ``nbmill rollback``; each one is announced.

Aliases, not stages: each is a tag of the version holding it (``store.alias_tag``), since
Azure ML's MLflow registry implements version tags but neither MLflow's alias API, nor tags on
a registered model, nor a search by tag; the same code runs on a local store and on a
workspace. Each move emits ``nbmill.model.promoted`` into the ledger with who and why: the
ledger is the history. ``rollback`` replays production's moves from it (``models/history.py``)
and moves production to the version before the current one.

A move reads the model's versions once (their tags say who holds which alias) and passes them
along.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from nbmill._time import iso, utcnow
from nbmill.context import context
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.governance.events import Notifier
from nbmill.models import store as st
from nbmill.models.gate import PRODUCTION, Decision
from nbmill.models.history import moves, production_stack
from nbmill.records.provenance import who

OUTSIDE_A_RUN = "interactive session (not an nbmill run)"


@dataclass(frozen=True)
class AliasMove:
    """One alias moved to a version, as announced in ``nbmill.model.promoted``."""

    model: str
    version: str
    alias: str
    previous_version: str | None
    who: str
    why: str
    run_id: str | None  # the nbmill run that made the version
    action: str  # gate, promote or rollback
    approved_by: str | None = None  # who approved the move (an environment's approval)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def subject(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def why(reason: str | None) -> str:
    """``reason``, else the current run's why, else a note that this is no run."""
    if reason:
        return reason
    return context().why() or OUTSIDE_A_RUN


def _why_required(reason: str | None, what: str) -> str:
    text = why(reason)
    if text == OUTSIDE_A_RUN:
        raise NbmillError(f"{what}: give a reason (it goes into the ledger with who moved what)")
    return text


def move(
    store: st.Store,
    notifier: Notifier,
    model: st.Registered,
    version: Any,
    alias: str,
    reason: str,
    action: str,
    decision: Decision | None = None,
    approved_by: str | None = None,
) -> AliasMove:
    """Point ``alias`` of ``model`` at ``version`` (a model version) and announce it. The new
    holder is tagged first, then the tag is taken from the old one: a move interrupted between
    the two leaves both tagged, and the newer tag wins (``Registered.aliases``)."""
    name, number = model.name, str(version.version)
    previous = model.aliases.get(alias)
    try:
        store.client.set_model_version_tag(name, number, st.alias_tag(alias), iso(utcnow()))
        for holder in model.holders(alias):
            if holder != number:
                store.client.delete_model_version_tag(name, holder, st.alias_tag(alias))
    except MlflowException as exc:
        raise NbmillError(f"model '{name}': cannot set alias '{alias}': {exc.message}") from None
    done = AliasMove(
        model=name,
        version=number,
        alias=alias,
        previous_version=previous,
        who=who(),
        why=reason,
        run_id=(version.tags or {}).get(st.TAG_RUN_ID),
        action=action,
        approved_by=approved_by,
    )
    data = done.as_dict()
    if decision is not None:
        data["decision"] = decision.reason
    notifier.emit("nbmill.model.promoted", subject(name, number), data)
    return done


def promote(
    name: str,
    version: str | int,
    alias: str = PRODUCTION,
    reason: str | None = None,
    *,
    approved_by: str | None = None,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> AliasMove:
    """Move ``alias`` to ``version`` by hand (``nbmill promote``); emits nbmill.model.promoted.

    ``reason`` is required outside a run (inside one, the run's why is used); ``approved_by``:
    who approved it (an Azure DevOps environment's approvers), kept with the move."""
    store = st.Store.of(project_dir)
    model = st.registered(store, name)
    found = st.version(store, name, version)
    if st.aliases_of(model).get(alias) == str(version):
        raise NbmillError(f"model '{name}' version {version} already holds alias '{alias}'")
    text = _why_required(reason, f"promote {name} {version}")
    with notifier_for(st.project(project_dir), notifier) as emit:
        return move(store, emit, model, found, alias, text, "promote", approved_by=approved_by)


def rollback(
    name: str,
    reason: str | None = None,
    *,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> AliasMove:
    """Move ``production`` back to the version that held it before the current one; versions
    deleted since are skipped."""
    store = st.Store.of(project_dir)
    model = st.registered(store, name)
    current = st.aliases_of(model).get(PRODUCTION)
    if current is None:
        raise NbmillError(f"model '{name}' has no production version to roll back")
    text = _why_required(reason, f"rollback {name}")
    with notifier_for(st.project(project_dir), notifier) as emit:
        recorded = production_stack(moves(emit.ledger.events(), name))
        stack = list(recorded)
        while stack and (stack[-1] == current or not st.exists(store, name, stack[-1])):
            stack.pop()
        if not stack:
            raise NbmillError(
                f"model '{name}': no previous production version to roll back to "
                f"(production is version {current}; production history: "
                f"{', '.join(recorded) or 'none'})"
            )
        target = st.version(store, name, stack[-1])
        return move(store, emit, model, target, PRODUCTION, text, "rollback")
