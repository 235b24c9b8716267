"""``nbmill deploy --target azureml`` and ``nbmill monitor-schedule``: Azure ML endpoints and
monitoring (the ``--backend azureml`` of ``nbmill run`` is in cli/run.py). Each builds real
azure-ai-ml entities; ``--dry-run DIR`` writes their YAML, checks it with the SDK's loaders and
nbmill's own checks, and submits nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbmill.cli._shared import Command, arg, command, project
from nbmill.errors import NbmillError

COMMANDS: list[Command] = []
DRY_RUN = arg("--dry-run", metavar="DIR", help="write the YAML to DIR and check it; submit nothing")
PARAMS = arg("--params", metavar="FILE", help="the params file whose azure: section applies")


def _settings(params: str | None):
    from nbmill.azure.settings import settings_from
    from nbmill.project.params import load_params_file

    if not params:
        return settings_from({})
    return settings_from(load_params_file(params).sections, params)


def _report(kind: str, written: Path, problems: list[str]) -> int:
    if problems:
        for problem in problems:
            print(f"error: {written}: {problem}")
        return 1
    print(f"{kind}: {written} (loaded back by the SDK and checked: valid)")
    return 0


@contextmanager
def _model(ref: str, here: Path) -> Iterator[tuple[Path, dict]]:
    """The model's folder and identity, for the ``with`` block (a registered model's download
    is removed after it)."""
    from nbmill.serving.startup import resolve_model

    with resolve_model(ref, here) as (folder, _, identity):
        yield Path(folder), identity


def _copy_model(folder: Path, target: Path) -> Path:
    """A registered model's files beside the dry run's YAML, for as long as the YAML is kept."""
    import shutil

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target)
    return target.resolve()


@command(
    COMMANDS,
    "deploy",
    "deploy a model to an Azure ML managed online endpoint, blue/green",
    "Deploy NAME@ALIAS (or a package folder) to a managed online endpoint: a new deployment at "
    "0% traffic, a smoke test against it by name, then traffic moved to it (through a mirror "
    "first, with the params' azure.mirror_percent), the old deployment kept for rollback. A "
    "failure leaves traffic where it was.",
    arg("model", help="NAME@ALIAS, NAME/VERSION or a package folder"),
    arg("--target", choices=["azureml"], required=True, help="where to deploy (azureml)"),
    arg("--endpoint", required=True, help="the managed online endpoint's name"),
    arg(
        "--sample",
        metavar="FILE",
        help="a request body for the smoke test (JSON; default: one row of typical values "
        "from the model's baseline profile)",
    ),
    PARAMS,
    DRY_RUN,
)
def cmd_deploy(args: argparse.Namespace) -> int:
    from nbmill.azure import endpoints

    here = project()
    settings = _settings(args.params)
    with _model(args.model, here) as (folder, identity):
        if args.dry_run:
            out = Path(args.dry_run)
            if not Path(args.model).is_dir():  # the YAML must not name a download that goes
                folder = _copy_model(folder, out / "model")
            rollout = endpoints.plan_rollout(args.endpoint, {}, set(), settings.mirror_percent)
            endpoints.write(rollout, folder, settings, identity, out)
            return _report("endpoint and deployment", out, endpoints.validate(out))
        from nbmill.azure.settings import Workspace

        sample = (
            json.loads(Path(args.sample).read_text()) if args.sample else endpoints.sample(folder)
        )
        result = endpoints.deploy(
            Workspace.from_environment(), args.endpoint, folder, settings, identity, sample
        )
    print(json.dumps(result, indent=1))
    return 0


@command(
    COMMANDS,
    "monitor-schedule",
    "schedule Azure ML model monitoring of a deployment, with nbmill's thresholds",
    "Create an Azure ML MonitorSchedule for a deployment: data drift, prediction drift and "
    "data quality against the training data asset, with the thresholds of the monitoring "
    "pipeline (Azure ML's defaults unless changed), on the params' azure.monitor_cron, "
    "alerting azure.alert_emails.",
    arg("model", help="NAME@ALIAS: the model whose deployment is monitored"),
    arg("--endpoint", required=True, help="the managed online endpoint's name"),
    arg(
        "--deployment",
        help="the deployment (default: the one taking the traffic; blue in a dry run)",
    ),
    arg(
        "--training-data",
        metavar="ASSET",
        help="the training data asset, an MLTable (default: azureml:MODEL-training@latest)",
    ),
    arg(
        "--pipeline",
        metavar="FILE",
        help="the monitoring pipeline whose thresholds apply (default: nbmill.yml's "
        "monitoring_pipeline)",
    ),
    PARAMS,
    DRY_RUN,
)
def cmd_monitor_schedule(args: argparse.Namespace) -> int:
    from nbmill.azure import monitoring
    from nbmill.models.ref import parse_ref
    from nbmill.monitor.thresholds import thresholds
    from nbmill.pipeline.runner import plan
    from nbmill.project.config import load_config

    here = project()
    settings = _settings(args.params)
    pipeline = Path(args.pipeline) if args.pipeline else load_config(here).monitoring_pipeline
    if pipeline is None:
        raise NbmillError(
            "monitor-schedule: which pipeline's thresholds? Pass --pipeline FILE, or set "
            "monitoring_pipeline in nbmill.yml"
        )
    planned = plan(pipeline, args.params, (), None, here)
    given = [values["thresholds"] for values in planned.resolved.values() if "thresholds" in values]
    limits = thresholds(given[0] if given else {})
    name = parse_ref(args.model).name
    workspace = None
    deployment = args.deployment or "blue"
    if not args.dry_run:
        from nbmill.azure.settings import Workspace

        workspace = Workspace.from_environment()
        if not args.deployment:
            traffic = workspace.client().online_endpoints.get(args.endpoint).traffic or {}
            if not any(traffic.values()):
                raise NbmillError(f"endpoint '{args.endpoint}' serves no traffic: deploy first")
            deployment = max(traffic, key=traffic.get)
    schedule = monitoring.schedule_entity(
        f"{name}-monitor",  # one schedule per endpoint, moved to the live deployment
        args.endpoint,
        deployment,
        args.training_data or f"azureml:{name}-training@latest",
        limits,
        settings,
    )
    if args.dry_run:
        path = monitoring.write(schedule, Path(args.dry_run) / "schedule.yml")
        return _report("monitor schedule", path, monitoring.validate(path, limits))
    created = workspace.client().schedules.begin_create_or_update(schedule)
    print(f"scheduled {created.result().name}")
    return 0
