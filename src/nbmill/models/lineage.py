"""Lineage of a target: a model version (``NAME@ALIAS``, ``NAME/VERSION``), a local deployment,
a run, or a collected request, back to the run that made it and that run's chain
(``records.lineage``), with the registry's side checked too: the version's recorded sha256
against the run's own model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbmill.collection import read_lines
from nbmill.errors import NbmillError
from nbmill.governance.ledger import Ledger
from nbmill.models import store as st
from nbmill.models.ref import is_model_ref
from nbmill.project.config import ProjectConfig
from nbmill.records.lineage import Link, reproductions, run_chain
from nbmill.records.runjson import MODEL, products, read, run_dirs


def trace(target: str, config: ProjectConfig, collect_dir: Path) -> list[Link]:
    """The chain of ``target``, first link first; every hash checked (``Link.ok``)."""
    name, version, run_id = resolve(target, config, collect_dir)
    events = Ledger(config.ledger).events()
    links = []
    if name is not None:
        model, tagged_run = model_link(name, version, config)
        links.append(model)
        run_id = run_id or tagged_run
    if run_id is None:
        raise NbmillError(f"{name}/{version}: no nbmill run is tagged on it")
    run_dir = config.runs_dir / run_id
    if not run_dir.is_dir():
        raise NbmillError(f"run {run_id}: no folder {run_dir} (the record is not on this machine)")
    chain = run_chain(run_dir, events)
    if name is not None:  # the registry's own link replaces the ledger's copy of it
        chain = [c for c in chain if not (c.kind == "model" and c.label == f"{name}/{version}")]
    return links + chain + reproductions(events, run_id)


def resolve(
    target: str, config: ProjectConfig, collect_dir: Path
) -> tuple[str | None, str | None, str | None]:
    """(model name, version, run id) of a TARGET; what is not known is None."""
    runs_dir = config.runs_dir
    if target in {p.name for p in run_dirs(runs_dir)}:
        return None, None, target
    deployment = config.deployments_dir / f"{target}.json"
    if Path(target).suffix == ".json" and Path(target).is_file():
        deployment = Path(target)
    if deployment.is_file():
        record = json.loads(deployment.read_text(encoding="utf-8"))
        return record["model"], str(record["version"]), record.get("run_id")
    if is_model_ref(target):
        ref, version = st.resolve(st.Store.of(config.project_dir), target)
        return ref.name, version, None
    if collect_dir.is_dir():
        for line in read_lines(collect_dir):
            if target in (line.get("correlationid"), line.get("xrequestid")):
                return line.get("modelname"), str(line.get("modelversion")), None
    raise NbmillError(
        f"'{target}': not a run, a deployment ({config.deployments_dir}/NAME.json), a "
        f"registered model (NAME@ALIAS, NAME/VERSION) nor a collected request's correlation id "
        f"in {collect_dir}"
    )


def model_link(name: str, version: str, config: ProjectConfig) -> tuple[Link, str | None]:
    """The registry's side: the version, its aliases, its run, and whether the model files
    that run recorded (``tracking.record_product("model", ...)``) still hash as registered."""
    from nbmill._hashing import tree_digest

    store = st.Store.of(config.project_dir)
    found = st.version(store, name, version)
    tags = found.tags or {}
    model = st.registered(store, name)
    aliases = st.aliases_of_version(model, version)
    run_id = tags.get(st.TAG_RUN_ID)
    expected = tags.get(st.TAG_ARTIFACTS)
    folder = _model_folder(config.runs_dir / run_id) if run_id else None
    ok = None
    detail = f"aliases: {', '.join(aliases) or 'none'}"
    if expected and folder is not None and folder.is_dir():
        ok = tree_digest(folder) == expected
        detail += "" if ok else f"; the run's model files now hash {tree_digest(folder)[:12]}"
    return Link("model", f"{name}/{version}", detail, expected, ok), run_id


def _model_folder(run_dir: Path) -> Path | None:
    """The model folder the run recorded, if its record is here and names one."""
    try:
        run: dict[str, Any] = read(run_dir)
    except NbmillError:
        return None
    folders = products(run, MODEL)
    return run_dir / folders[-1] if folders else None


LOGGED = ".logged"  # inside the caller's folder: a download of the logged training data


def training_data_file(version, project_dir: Path, folder: Path, given: str | None = None) -> Path:
    """The file a model version (an MLflow ModelVersion) was trained on: ``given`` (a path);
    else the file of the run that registered it (``runs/<run>/``) whose sha256 the version's
    tags record; else the copy logged with the version's MLflow run (downloaded beside
    ``folder``, in ``LOGGED``). Checked against that sha256; NbmillError naming the options
    otherwise."""
    from nbmill._hashing import sha256_file
    from nbmill.project.config import load_config

    expected = (version.tags or {}).get(st.TAG_DATA)
    if given:
        path = Path(given)
    else:
        run_id = (version.tags or {}).get(st.TAG_RUN_ID) or ""
        run_dir = load_config(project_dir).runs_dir / run_id
        files = (read(run_dir).get("files") or {}) if (run_dir / "run.json").is_file() else {}
        found = [rel for rel, sha in sorted(files.items()) if sha == expected]
        logged = (version.tags or {}).get(st.TAG_DATA_FILE)
        if found:
            path = run_dir / found[0]
        elif logged and version.run_id:
            store = st.Store.of(project_dir)
            path = store.download_run_file(version.run_id, logged, Path(folder) / LOGGED)
        else:
            raise NbmillError(
                f"the training data of {version.name} version "
                f"{version.version} is neither in {run_dir} nor logged with its MLflow run; "
                "give it with --training-data FILE (a CSV) or an Azure ML data asset "
                "(azureml:NAME:VERSION)"
            )
    if not path.is_file():
        raise NbmillError(f"--training-data {path}: no such file")
    if expected and sha256_file(path) != expected:
        raise NbmillError(
            f"{path} is not the data {version.name} version {version.version} "
            f"was trained on (its sha256 differs from the version's {st.TAG_DATA})"
        )
    return path
