"""The evaluate step's gate: score this run's candidate and production on the same rows, decide,
move aliases, and record the decision.

The candidate is the version whose artifacts digest equals the digest of the step's
``model_dir`` input. A candidate whose score beats production by strictly more than
``min_improvement`` gets the ``staging`` alias; the first version of a model (no production
yet) gets ``staging`` and ``production``. Otherwise no alias moves; the decision is recorded all
the same (version tags ``nbmill.gate.*``, the step's metrics, ``gate.json`` in the step's output
folder).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from nbmill import tracking
from nbmill._fs import write_json
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.governance.events import Notifier
from nbmill.models import store as st
from nbmill.models.aliases import AliasMove, move, why
from nbmill.models.gate import PRODUCTION, STAGING, Decision, gate
from nbmill.models.registry import downloaded, find_candidate
from nbmill.records.runjson import GATE

GATE_FILE = "gate.json"
Scorer = Callable[[Path], Mapping[str, float]]


def _score(scorer: Scorer, path: Path, metric: str, which: str) -> float:
    scores = dict(scorer(path))
    if metric not in scores:
        raise NbmillError(
            f"gate metric '{metric}' is not among the scores of the {which} model "
            f"({', '.join(sorted(scores)) or 'none'}); set the evaluate step's 'metric' parameter"
        )
    return float(scores[metric])


def _version_number(version: str) -> float | None:
    return float(version) if version.isdigit() else None


def evaluate_and_gate(
    name: str,
    model_dir: str | Path,
    scorer: Scorer,
    *,
    metric: str,
    greater_is_better: bool,
    min_improvement: float,
    out_dir: str | Path | None = None,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> Decision:
    """Gate this run's candidate (the version registered from ``model_dir``) against the
    ``production`` version, both scored by ``scorer(model_folder)`` on the same rows.

    Promoted: ``staging`` moves to the candidate (and ``production`` too when there was none),
    one ``nbmill.model.promoted`` event per move. Either way the decision is recorded: version
    tags ``nbmill.gate.*``, the step's metrics (``promoted``, ``candidate_version``, and with a
    production model ``production_version``, ``production_<metric>``, ``gate_delta``), and
    ``<out_dir>/gate.json``.
    """
    store = st.Store.of(project_dir)
    model = st.registered(store, name)
    candidate = find_candidate(name, model_dir, project_dir)
    number = str(candidate.version)
    candidate_score = _score(scorer, Path(model_dir), metric, "candidate")
    production = st.aliases_of(model).get(PRODUCTION)
    production_score = None
    if production is not None:
        found = st.version(store, name, production)
        with downloaded(store, found) as folder:
            production_score = _score(scorer, folder, metric, f"production (v{production})")
    decision = gate(
        name,
        number,
        candidate_score,
        production_score,
        metric,
        greater_is_better,
        min_improvement,
        production_version=production,
    )
    client = store.client
    client.set_model_version_tag(name, number, st.TAG_GATE_PROMOTED, str(decision.promoted).lower())
    client.set_model_version_tag(name, number, st.TAG_GATE_REASON, decision.reason)
    moves: list[AliasMove] = []
    if decision.promoted:
        reason = why(None)
        aliases = [STAGING] if production is not None else [STAGING, PRODUCTION]
        with notifier_for(st.project(project_dir), notifier) as emit:
            for alias in aliases:
                moves.append(move(store, emit, model, candidate, alias, reason, "gate", decision))
    _record(decision, moves, out_dir)
    return decision


def _record(decision: Decision, moves: list[AliasMove], out_dir: str | Path | None) -> None:
    metrics: dict[str, float] = {"promoted": 1.0 if decision.promoted else 0.0}
    if (number := _version_number(decision.candidate_version)) is not None:
        metrics["candidate_version"] = number
    if decision.production_version is not None:
        if (number := _version_number(decision.production_version)) is not None:
            metrics["production_version"] = number
        metrics[f"production_{decision.metric}"] = float(decision.production_score)
        metrics["gate_delta"] = float(decision.delta)
    tracking.log_metrics(metrics)
    tracking.set_mlflow_tag("nbmill.gate", decision.reason[:5000])
    if out_dir is not None:
        body = {**decision.as_dict(), "moves": [m.as_dict() for m in moves]}
        write_json(Path(out_dir) / GATE_FILE, body)
        tracking.record_product(GATE, Path(out_dir) / GATE_FILE)
