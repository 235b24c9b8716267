"""``nbmill lineage TARGET``: from a model, a deployment, a run or a collected request back to
its data, code and notebooks, each link checked as it is printed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nbmill.cli._shared import JSON, RUNS_DIR, Command, arg, command, config, output, project
from nbmill.errors import NbmillError

COMMANDS: list[Command] = []


def _model_link(name: str, version: str, here: Path, runs_dir: Path):
    """The registry's side: the version, its run, and whether its files still match."""
    from nbmill._hashing import tree_digest
    from nbmill.models import store as st
    from nbmill.records.lineage import Link

    store = st.Store.of(here)
    found = st.version(store, name, version)
    tags = found.tags or {}
    model = st.registered(store, name)
    aliases = sorted(a for a, v in st.aliases_of(model).items() if v == str(version))
    run_id = tags.get(st.TAG_RUN_ID)
    expected = tags.get(st.TAG_ARTIFACTS)
    folder = runs_dir / run_id / "model" if run_id else None
    ok = None
    detail = f"aliases: {', '.join(aliases) or 'none'}"
    if expected and folder is not None and folder.is_dir():
        ok = tree_digest(folder) == expected
        detail += "" if ok else f"; the run's model files now hash {tree_digest(folder)[:12]}"
    return Link("model", f"{name}/{version}", detail, expected, ok), run_id


def _resolve(target: str, here: Path, runs_dir: Path, collect_dir: Path):
    """(model name, version or None, run id) of a TARGET."""
    from nbmill.records.runjson import run_dirs

    if target in {p.name for p in run_dirs(runs_dir)}:
        return None, None, target
    deployment = runs_dir / "deployments" / f"{target}.json"
    if Path(target).suffix == ".json" and Path(target).is_file():
        deployment = Path(target)
    if deployment.is_file():
        record = json.loads(deployment.read_text(encoding="utf-8"))
        return record["model"], str(record["version"]), record.get("run_id")
    text = target.removeprefix("models:/")
    if "@" in text or "/" in text:
        from nbmill.models import store as st

        name, _, rest = text.partition("@") if "@" in text else text.rpartition("/")
        store = st.Store.of(here)
        version = rest
        if "@" in text:
            version = st.aliases_of(st.registered(store, name)).get(rest)
            if version is None:
                raise NbmillError(f"model '{name}' has no version with alias '{rest}'")
        return name, str(version), None
    from nbmill.monitor.collected import read_lines

    if collect_dir.is_dir():
        for line in read_lines(collect_dir):
            if target in (line.get("correlationid"), line.get("xrequestid")):
                return line.get("modelname"), str(line.get("modelversion")), None
    raise NbmillError(
        f"'{target}': not a run, a deployment (runs/deployments/NAME.json), a registered model "
        f"(NAME@ALIAS, NAME/VERSION) nor a collected request's correlation id in {collect_dir}"
    )


@command(
    COMMANDS,
    "lineage",
    "trace a model, deployment, run or request back to its data, code and notebooks",
    "TARGET is NAME@ALIAS, NAME/VERSION, a local deployment (local), a run id, or a collected "
    "request's correlation id. Prints the chain: the model version, the run that trained it "
    "(who, why, when), each step's executed notebook and the data it read with their sha256, "
    "the commit, the environment, the gate decision and the deployments that served it. "
    "Every hash is checked as it is printed: BROKEN marks one that no longer matches.",
    arg("target", help="NAME@ALIAS, NAME/VERSION, local, a run id, or a correlation id"),
    arg("--collect-dir", metavar="DIR", help="where collected requests are (collected/)"),
    RUNS_DIR,
    JSON,
)
def cmd_lineage(args: argparse.Namespace) -> int:
    from nbmill.governance.ledger import Ledger
    from nbmill.records.lineage import as_text, broken, reproductions, run_chain

    here = project()
    settings = config(args)
    runs_dir = settings.runs_dir
    collect = Path(args.collect_dir) if args.collect_dir else here / "collected"
    name, version, run_id = _resolve(args.target, here, runs_dir, collect)
    events = Ledger(settings.ledger).events()
    links = []
    if name is not None:
        model, tagged_run = _model_link(name, version, here, runs_dir)
        links.append(model)
        run_id = run_id or tagged_run
    if run_id is None:
        raise NbmillError(f"{name}/{version}: no nbmill run is tagged on it")
    run_dir = runs_dir / run_id
    if not run_dir.is_dir():
        raise NbmillError(f"run {run_id}: no folder {run_dir} (the record is not on this machine)")
    chain = run_chain(run_dir, events)
    if name is not None:  # the registry's own link replaces the ledger's copy of it
        chain = [c for c in chain if not (c.kind == "model" and c.label == f"{name}/{version}")]
    links += chain + reproductions(events, run_id)
    data = {"target": args.target, "links": [link.as_dict() for link in links]}
    code = output(args, data, lambda: as_text(args.target, links))
    return 1 if broken(links) else code
