"""Alias moves: the gate's, ``nbmill promote`` and ``nbmill rollback``; each one is announced.

Aliases, not stages (MLflow 3). Each move emits ``nbmill.model.promoted`` into the ledger with
who and why. ``rollback`` replays production's moves from the ledger (``models/history.py``)
and moves production to the version before the current one. The registered model also keeps
the history in the tag ``nbmill.production_history`` (a JSON list of versions, oldest first)
for readers of the registry; two promotions racing may lose an entry there, so it is only read
when the ledger has no moves of the model.

A move reads the registered model once (its aliases and tags) and passes it along.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from nbmill.context import context
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.governance.events import Notifier
from nbmill.models import store as st
from nbmill.models.gate import PRODUCTION, Decision
from nbmill.models.history import moves, production_stack
from nbmill.records.provenance import who

TAG_HISTORY = "nbmill.production_history"
HISTORY_KEEP = 200  # entries kept in the history tag (MLflow tag values are limited in size)
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


def history(model: Any) -> list[str]:
    """The production history of a registered model (as ``store.registered`` returns it)."""
    raw = (model.tags or {}).get(TAG_HISTORY)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except (TypeError, ValueError):
        raise NbmillError(
            f"model '{model.name}': tag {TAG_HISTORY} is not a JSON list: {raw!r}"
        ) from None


def move(
    store: st.Store,
    notifier: Notifier,
    model: Any,
    version: Any,
    alias: str,
    reason: str,
    action: str,
    decision: Decision | None = None,
    production_history: list[str] | None = None,
) -> AliasMove:
    """Point ``alias`` of ``model`` (a registered model) at ``version`` (a model version), keep
    the production history, announce it."""
    name, number = model.name, str(version.version)
    previous = st.aliases_of(model).get(alias)
    if alias == PRODUCTION and production_history is None:
        production_history = history(model)
        if previous is not None and (not production_history or production_history[-1] != previous):
            production_history.append(previous)
        production_history.append(number)
    try:
        store.client.set_registered_model_alias(name, alias, number)
    except MlflowException as exc:
        raise NbmillError(f"model '{name}': cannot set alias '{alias}': {exc.message}") from None
    if alias == PRODUCTION:
        store.client.set_registered_model_tag(
            name, TAG_HISTORY, json.dumps(production_history[-HISTORY_KEEP:])
        )
    done = AliasMove(
        model=name,
        version=number,
        alias=alias,
        previous_version=previous,
        who=who(),
        why=reason,
        run_id=(version.tags or {}).get(st.TAG_RUN_ID),
        action=action,
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
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> AliasMove:
    """Move ``alias`` to ``version`` by hand (``nbmill promote``); emits nbmill.model.promoted.

    ``reason`` is required outside a run (inside one, the run's why is used)."""
    store = st.Store.of(project_dir)
    model = st.registered(store, name)
    found = st.version(store, name, version)
    if st.aliases_of(model).get(alias) == str(version):
        raise NbmillError(f"model '{name}' version {version} already holds alias '{alias}'")
    text = _why_required(reason, f"promote {name} {version}")
    with notifier_for(st.project(project_dir), notifier) as emit:
        return move(store, emit, model, found, alias, text, "promote")


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
        # The ledger is the source of truth; the tag is kept for readers of the registry.
        recorded = production_stack(moves(emit.ledger.events(), name)) or history(model)
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
        return move(
            store, emit, model, target, PRODUCTION, text, "rollback", production_history=stack
        )
