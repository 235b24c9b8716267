"""The MLflow model registry: register a run's model, gate it against production, move aliases.

The train step registers its model (``register_model``) with tags that tie the version to the
nbmill run that made it::

    nbmill.run_id            the nbmill run (runs/<run-id>/)
    nbmill.commit            the git commit the run ran at ("" when unknown)
    nbmill.data_sha256       sha256 of the training data file
    nbmill.environment       the run's environment fingerprint (run.json; "" outside a run)
    nbmill.artifacts_sha256  ``record.tree_digest`` of the version's files, as
                             ``mlflow.artifacts.download_artifacts("models:/NAME/VERSION")``
                             returns them (MLflow adds a ``registered_model_meta`` file naming
                             the model and version); the run's ``model_dir`` is replaced by
                             exactly those files, so the run record, the deploy package and the
                             registry all hold one digest, which ``nbmill serve`` re-checks

The evaluate step (``evaluate_and_gate``) finds its candidate as the version whose artifacts
digest equals the digest of its ``model_dir`` input, scores it and the ``production`` version
with the same scorer on the same held-out rows, and applies ``gate`` (pure). A candidate whose
score beats production by strictly more than ``min_improvement`` gets the ``staging`` alias; the
first version of a model (no production yet) gets ``staging`` and ``production``. Otherwise no
alias moves; the decision is recorded all the same (version tags ``nbmill.gate.*``, the step's
metrics, ``gate.json`` in the step's output folder).

Aliases, not stages (MLflow 3). Each alias move emits ``nbmill.model.promoted`` into the ledger
with who and why. To roll back, the registered model keeps its production history in the tag
``nbmill.production_history``: a JSON list of versions, oldest first, the current production
version last. A move to production appends (first the version it replaced, if an out-of-band
move left it unrecorded); ``rollback`` drops the current version from the end and moves
production to the version then last. Two promotions racing may lose a history entry; the
ledger still holds every move.

This module imports MLflow (seconds), so only what needs the registry imports it; a notebook
that does has it preloaded by its warm kernel. The store is
``tracking.tracking_uri(project_dir)``: ``MLFLOW_TRACKING_URI`` if set, else the project's sqlite.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from nbmill import tracking
from nbmill.errors import NbmillError
from nbmill.events import Notifier
from nbmill.record import git_info, iso, sha256_file, tree_digest, who, write_atomic

PRODUCTION = "production"
STAGING = "staging"
TAG_RUN_ID = tracking.RUN_ID_TAG  # "nbmill.run_id", as on the MLflow run
TAG_COMMIT = "nbmill.commit"
TAG_DATA = "nbmill.data_sha256"
TAG_ENVIRONMENT = "nbmill.environment"
TAG_ARTIFACTS = "nbmill.artifacts_sha256"
TAG_GATE_PROMOTED = "nbmill.gate.promoted"
TAG_GATE_REASON = "nbmill.gate.reason"
TAG_HISTORY = "nbmill.production_history"
HISTORY_KEEP = 200  # entries kept in the history tag (MLflow tag values are limited in size)
GATE_FILE = "gate.json"
OUTSIDE_A_RUN = "interactive session (not an nbmill run)"

Scorer = Callable[[Path], Mapping[str, float]]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate version.

    ``delta`` is candidate minus production in the metric's units (negative is an improvement
    when lower is better); ``improvement`` is the same gap signed so that positive is better.
    """

    model: str
    candidate_version: str
    promoted: bool
    reason: str
    metric: str
    greater_is_better: bool
    min_improvement: float
    candidate_score: float
    production_version: str | None = None
    production_score: float | None = None
    delta: float | None = None

    @property
    def improvement(self) -> float | None:
        if self.delta is None:
            return None
        return self.delta if self.greater_is_better else -self.delta

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "improvement": self.improvement}

    def _repr_markdown_(self) -> str:
        """How a notebook shows it: the verdict and why, then the numbers."""

        def number(value: float | None) -> str:
            return "–" if value is None else f"{value:.4f}"

        verdict = "promoted" if self.promoted else "not promoted"
        production = "none"
        if self.production_version is not None:
            production = f"v{self.production_version}: {number(self.production_score)}"
        rows = [
            ("model", self.model),
            ("candidate", f"v{self.candidate_version}: {number(self.candidate_score)}"),
            ("production", production),
            ("improvement", number(self.improvement)),
            ("required", f"more than {self.min_improvement:g}"),
            ("better", "higher" if self.greater_is_better else "lower"),
        ]
        table = "\n".join(f"| {key} | {value} |" for key, value in rows)
        why = self.reason.removeprefix("not promoted: ")
        return f"**{verdict}**: {why}\n\n| gate on {self.metric} | |\n|---|---|\n{table}\n"


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


# --- the gate (pure) -------------------------------------------------------------------------


def gate(
    name: str,
    candidate_version: str,
    candidate_score: float,
    production_score: float | None,
    metric: str,
    greater_is_better: bool,
    min_improvement: float,
    production_version: str | None = None,
) -> Decision:
    """Promote when there is no production score, or when the candidate beats it by strictly
    more than ``min_improvement`` in the metric's better direction."""
    if not math.isfinite(candidate_score):
        raise NbmillError(f"gate: candidate {metric} is {candidate_score}, not a finite number")
    if not (math.isfinite(min_improvement) and min_improvement >= 0):
        raise NbmillError(f"gate: min_improvement must be a number >= 0, got {min_improvement}")
    decide = dict(
        model=name,
        candidate_version=str(candidate_version),
        metric=metric,
        greater_is_better=bool(greater_is_better),
        min_improvement=float(min_improvement),
        candidate_score=float(candidate_score),
    )
    if production_score is None:
        return Decision(promoted=True, reason="no production model yet", **decide)
    if not math.isfinite(production_score):
        raise NbmillError(f"gate: production {metric} is {production_score}, not a finite number")
    delta = float(candidate_score) - float(production_score)
    improvement = delta if greater_is_better else -delta
    better = "higher" if greater_is_better else "lower"
    production = f"production v{production_version}" if production_version else "production"
    promoted = improvement > min_improvement
    if promoted:
        reason = (
            f"{metric} {candidate_score:.4f} beats {production}'s {production_score:.4f} "
            f"by {improvement:.4f} ({better} is better; required: more than {min_improvement:g})"
        )
    else:
        reason = (
            f"not promoted: {metric} {candidate_score:.4f} does not beat {production}'s "
            f"{production_score:.4f} by more than {min_improvement:g} "
            f"(improvement {improvement:+.4f}; {better} is better)"
        )
    return Decision(
        promoted=promoted,
        reason=reason,
        production_version=None if production_version is None else str(production_version),
        production_score=float(production_score),
        delta=delta,
        **decide,
    )


# --- provenance, the store, the ledger ------------------------------------------------------


def run_provenance(data_path: str | Path, project_dir: Path | None = None) -> dict[str, str]:
    """The keyword arguments ``register_model`` needs from the current run, for a notebook:
    run id, git commit, the data file's sha256 and the environment fingerprint."""
    ctx = tracking.context()
    run = tracking.run_json(ctx)
    if run:
        commit = (run.get("git") or {}).get("commit")
    else:
        commit = git_info(Path(project_dir or ctx.project_dir))["commit"]
    return {
        "run_id": ctx.run_id,
        "commit": commit or "",
        "data_sha256": sha256_file(Path(data_path)),
        "environment_fingerprint": (run.get("environment") or {}).get("fingerprint", ""),
    }


def _why(reason: str | None) -> str:
    if reason:
        return reason
    return tracking.run_json().get("why") or OUTSIDE_A_RUN


def _project(project_dir: Path | None) -> Path:
    return Path(project_dir).resolve() if project_dir else tracking.context().project_dir


def _client(project_dir: Path):
    """An MlflowClient on the project's store (set as mlflow's current store too)."""

    mlflow.set_tracking_uri(tracking.tracking_uri(project_dir))
    return mlflow.MlflowClient()


def _subject(name: str, version: str) -> str:
    return f"models/{name}/{version}"


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No tqdm progress bars in executed notebooks and logs."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def _check_name(name: str) -> None:
    if not name or "'" in name or "`" in name:
        raise NbmillError(f"model name {name!r}: must be non-empty, without quotes or backticks")


def _registered(client, name: str):
    """The registered model, or NbmillError naming the models there are."""

    _check_name(name)
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    names = sorted(m.name for m in _all_models(client))
    raise NbmillError(
        f"no registered model '{name}' (registered models: {', '.join(names) or 'none'})"
    )


def _all_models(client) -> list:
    models, token = [], None
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def _versions(client, name: str, filter_string: str | None = None) -> list:
    query = f"name='{name}'" + (f" and {filter_string}" if filter_string else "")
    found, token = [], None
    while True:
        page = client.search_model_versions(query, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return sorted(found, key=lambda v: _version_key(str(v.version)))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _version(client, name: str, version: str | int):
    """The model version, or NbmillError naming the model and listing its versions."""

    _registered(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    existing = [str(v.version) for v in _versions(client, name)]
    raise NbmillError(
        f"model '{name}' has no version {version} (versions: {', '.join(existing) or 'none'})"
    )


def _aliases(client, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in (_registered(client, name).aliases or {}).items()}


def _history(client, name: str) -> list[str]:
    raw = (_registered(client, name).tags or {}).get(TAG_HISTORY)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except (TypeError, ValueError):
        raise NbmillError(
            f"model '{name}': tag {TAG_HISTORY} is not a JSON list: {raw!r}"
        ) from None


def _save_history(client, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, TAG_HISTORY, json.dumps(history[-HISTORY_KEEP:]))


# --- register ------------------------------------------------------------------------------


def register_model(
    model_uri_or_info: Any,
    name: str,
    *,
    run_id: str,
    commit: str,
    data_sha256: str,
    environment_fingerprint: str,
    model_dir: str | Path,
    metrics: Mapping[str, float] | None = None,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> str:
    """Register a logged model as a new version of ``name``; returns the version.

    ``model_uri_or_info`` is what ``log_model`` returned (ModelInfo) or a model URI.
    ``model_dir`` (the run's model folder) is replaced by exactly the registered version's
    files, and their ``tree_digest`` is tagged ``nbmill.artifacts_sha256``. Emits
    ``nbmill.model.registered``.
    """

    project = _project(project_dir)
    _check_name(name)
    client = _client(project)
    uri = getattr(model_uri_or_info, "model_uri", model_uri_or_info)
    if not isinstance(uri, str):
        raise NbmillError(f"register_model: expected a ModelInfo or a model URI, got {uri!r}")
    tags = {
        TAG_RUN_ID: run_id,
        TAG_COMMIT: commit or "",
        TAG_DATA: data_sha256,
        TAG_ENVIRONMENT: environment_fingerprint or "",
    }
    registered = mlflow.register_model(uri, name, tags=tags)
    version = str(registered.version)
    model_dir = Path(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    with _quiet_downloads():
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(model_dir))
    digest = tree_digest(model_dir)
    client.set_model_version_tag(name, version, TAG_ARTIFACTS, digest)
    data = {
        "model": name,
        "version": version,
        "run_id": run_id,
        "who": who(),
        "why": _why(None),
        "artifacts_sha256": digest,
        "commit": commit or "",
        "data_sha256": data_sha256,
        "environment": environment_fingerprint or "",
        "mlflow_run_id": registered.run_id or None,
        "source": registered.source,
    }
    if metrics:
        data["metrics"] = {k: float(v) for k, v in metrics.items()}
    with tracking.emitter(project, notifier) as emit:
        emit.emit("nbmill.model.registered", _subject(name, version), data)
    return version


def fetch(
    name: str, version: str | int, dst: str | Path | None = None, project_dir: Path | None = None
) -> Path:
    """Download a version's files into ``dst`` (a new temporary folder by default) and check
    them against the version's ``nbmill.artifacts_sha256`` tag; returns the folder."""

    client = _client(_project(project_dir))
    found = _version(client, name, version)
    target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="nbmill-model-"))
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with _quiet_downloads():
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(target))
    expected = (found.tags or {}).get(TAG_ARTIFACTS)
    actual = tree_digest(target)
    if expected and actual != expected:
        raise NbmillError(
            f"model '{name}' version {version}: its files have sha256 {actual[:16]}…, but "
            f"{expected[:16]}… was recorded when it was registered; the artifacts changed"
        )
    return target


def find_candidate(name: str, model_dir: str | Path, project_dir: Path | None = None) -> str:
    """The version of ``name`` whose registered files are exactly those in ``model_dir``."""
    client = _client(_project(project_dir))
    _registered(client, name)
    digest = tree_digest(Path(model_dir))
    found = _versions(client, name, f"tags.`{TAG_ARTIFACTS}` = '{digest}'")
    if not found:
        raise NbmillError(
            f"{model_dir}: no version of model '{name}' has these files (sha256 {digest[:16]}…); "
            "the train step registers its model with nbmill.registry.register_model"
        )
    return str(found[-1].version)


# --- evaluate and gate ---------------------------------------------------------------------


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
    project = _project(project_dir)
    client = _client(project)
    candidate = find_candidate(name, model_dir, project)
    candidate_score = _score(scorer, Path(model_dir), metric, "candidate")
    production = _aliases(client, name).get(PRODUCTION)
    production_score = None
    if production is not None:
        with tempfile.TemporaryDirectory(prefix="nbmill-production-") as tmp:
            folder = fetch(name, production, Path(tmp) / "model", project)
            production_score = _score(scorer, folder, metric, f"production (v{production})")
    decision = gate(
        name,
        candidate,
        candidate_score,
        production_score,
        metric,
        greater_is_better,
        min_improvement,
        production_version=production,
    )
    client.set_model_version_tag(name, candidate, TAG_GATE_PROMOTED, str(decision.promoted).lower())
    client.set_model_version_tag(name, candidate, TAG_GATE_REASON, decision.reason)
    moves: list[AliasMove] = []
    if decision.promoted:
        why = _why(None)
        aliases = [STAGING] if production is not None else [STAGING, PRODUCTION]
        with tracking.emitter(project, notifier) as emit:
            for alias in aliases:
                moves.append(_move(client, emit, name, candidate, alias, why, "gate", decision))
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

    if mlflow.active_run() is not None:
        mlflow.set_tag("nbmill.gate", decision.reason[:5000])
    if out_dir is not None:
        body = {**decision.as_dict(), "moves": [m.as_dict() for m in moves]}
        write_atomic(Path(out_dir) / GATE_FILE, json.dumps(body, indent=2) + "\n")


# --- alias moves ---------------------------------------------------------------------------


def _move(
    client,
    notifier: Notifier,
    name: str,
    version: str,
    alias: str,
    why: str,
    action: str,
    decision: Decision | None = None,
    history: list[str] | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version``, keep the production history, announce it."""

    found = _version(client, name, version)
    previous = _aliases(client, name).get(alias)
    if alias == PRODUCTION and history is None:
        history = _history(client, name)
        if previous is not None and (not history or history[-1] != previous):
            history.append(previous)
        history.append(str(version))
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise NbmillError(f"model '{name}': cannot set alias '{alias}': {exc.message}") from None
    if alias == PRODUCTION:
        _save_history(client, name, history)
    move = AliasMove(
        model=name,
        version=str(version),
        alias=alias,
        previous_version=previous,
        who=who(),
        why=why,
        run_id=(found.tags or {}).get(TAG_RUN_ID),
        action=action,
    )
    data = move.as_dict()
    if decision is not None:
        data["decision"] = decision.reason
    notifier.emit("nbmill.model.promoted", _subject(name, str(version)), data)
    return move


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
    project = _project(project_dir)
    client = _client(project)
    version = str(version)
    _version(client, name, version)
    if _aliases(client, name).get(alias) == version:
        raise NbmillError(f"model '{name}' version {version} already holds alias '{alias}'")
    why = _why_required(reason, f"promote {name} {version}")
    with tracking.emitter(project, notifier) as emit:
        return _move(client, emit, name, version, alias, why, "promote")


def rollback(
    name: str,
    reason: str | None = None,
    *,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> AliasMove:
    """Move ``production`` back to the version that held it before the current one."""

    project = _project(project_dir)
    client = _client(project)
    current = _aliases(client, name).get(PRODUCTION)
    if current is None:
        raise NbmillError(f"model '{name}' has no production version to roll back")
    history = _history(client, name)
    stack = list(history)
    while stack:
        if stack[-1] == current:
            stack.pop()
            continue
        try:
            client.get_model_version(name, stack[-1])
            break
        except MlflowException:  # deleted since: skip it
            stack.pop()
    if not stack:
        raise NbmillError(
            f"model '{name}': no previous production version to roll back to "
            f"(production is version {current}; production history: "
            f"{', '.join(history) or 'none'})"
        )
    why = _why_required(reason, f"rollback {name}")
    with tracking.emitter(project, notifier) as emit:
        return _move(client, emit, name, stack[-1], PRODUCTION, why, "rollback", history=stack)


def _why_required(reason: str | None, what: str) -> str:
    why = _why(reason)
    if why == OUTSIDE_A_RUN:
        raise NbmillError(f"{what}: give a reason (it goes into the ledger with who moved what)")
    return why


# --- reading -------------------------------------------------------------------------------


def list_models(
    name: str | None = None,
    *,
    metric_names: Sequence[str] | None = None,
    project_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per version, each model's newest first: name, version, aliases, nbmill run id,
    MLflow run id, created, commit, artifacts sha256, gate reason, and the metrics of the MLflow
    run that logged it (all of them, or ``metric_names`` such as ``evaluate.test_r2``)."""

    client = _client(_project(project_dir))
    models = [_registered(client, name)] if name else _all_models(client)
    runs: dict[str, dict[str, float]] = {}
    rows = []
    for model in sorted(models, key=lambda m: m.name):
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for found in reversed(_versions(client, model.name)):
            run = found.run_id or ""
            if run and run not in runs:
                try:
                    runs[run] = dict(client.get_run(run).data.metrics)
                except MlflowException:
                    runs[run] = {}
            metrics = runs.get(run, {})
            if metric_names is not None:
                metrics = {k: metrics[k] for k in metric_names if k in metrics}
            tags = found.tags or {}
            version = str(found.version)
            rows.append(
                {
                    "name": model.name,
                    "version": version,
                    "aliases": sorted(aliases.get(version, [])),
                    "run_id": tags.get(TAG_RUN_ID),
                    "mlflow_run_id": run or None,
                    "created": iso(datetime.fromtimestamp(found.creation_timestamp / 1000, UTC)),
                    "commit": tags.get(TAG_COMMIT),
                    "artifacts_sha256": tags.get(TAG_ARTIFACTS),
                    "gate": tags.get(TAG_GATE_REASON),
                    "metrics": metrics,
                }
            )
    return rows


def resolve_registered(ref: str, project_dir: Path) -> tuple[Path, str | None, dict[str, Any]]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (``models:/`` optional) for ``nbmill serve``: the
    downloaded model folder, the sha256 it must have, and its identity for /health."""
    text = ref.removeprefix("models:/")
    if "@" in text:
        name, alias = text.split("@", 1)
        version = None
    elif "/" in text:
        name, version = text.rsplit("/", 1)
        alias = None
    else:
        raise NbmillError(
            f"'{ref}': not a folder, nor a registered model as NAME@ALIAS or NAME/VERSION"
        )
    project = Path(project_dir).resolve()
    client = _client(project)
    if alias is not None:
        version = _aliases(client, name).get(alias)
        if version is None:
            raise NbmillError(f"model '{name}' has no version with alias '{alias}'")
    found = _version(client, name, version)
    expected = (found.tags or {}).get(TAG_ARTIFACTS)
    folder = fetch(name, version, project_dir=project)
    identity = {
        "model": name,
        "version": str(version),
        "alias": alias,
        "run_id": (found.tags or {}).get(TAG_RUN_ID),
    }
    return folder, expected, identity
