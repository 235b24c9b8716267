"""``nbmill deploy --on azureml`` and ``nbmill monitor-schedule``: Azure ML endpoints and
monitoring (``nbmill run --on azureml`` is in cli/run.py). The work is in ``nbmill.azure``:
real azure-ai-ml entities, submitted, or with ``--dry-run`` written as YAML to ``--out`` and
checked with the SDK's loaders and nbmill's own checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbmill.cli._shared import (
    ON_AZUREML,
    Commands,
    arg,
    config,
    note,
    on,
    output,
    print_dry_run,
    project,
)

COMMANDS = Commands()
PARAMS = arg("--params", metavar="FILE", help="the params file whose azure: section applies")


@COMMANDS.command(
    "deploy",
    "deploy a model to an Azure ML managed online endpoint, blue/green",
    "Deploy NAME@ALIAS (or a package folder) to a managed online endpoint: a new deployment at "
    "0% traffic, a smoke test against it by name, then traffic moved to it (through a mirror "
    "first, with the params' azure.mirror_percent), the old deployment kept for rollback. A "
    "failure leaves traffic where it was. (A local deployment is the pipeline's deploy step, "
    "and `nbmill serve`.)",
    arg("model", help="NAME@ALIAS, NAME/VERSION or a package folder"),
    *on(ON_AZUREML, default=ON_AZUREML, old="--target"),
    arg("--endpoint", required=True, help="the managed online endpoint's name"),
    arg(
        "--sample",
        metavar="FILE",
        help="a request body for the smoke test (JSON; default: one row of typical values "
        "from the model's baseline profile)",
    ),
    PARAMS,
)
def cmd_deploy(args: argparse.Namespace) -> int:
    from nbmill.azure import endpoints
    from nbmill.azure.dry_run import out_dir
    from nbmill.azure.settings import settings_of
    from nbmill.serving.startup import resolve_model

    settings = settings_of(args.params)
    with resolve_model(args.model, project()) as (folder, _, identity):
        if args.dry_run:
            out = out_dir(args.out, config(args).runs_dir)
            copy = not Path(args.model).is_dir()  # the YAML outlives a registered model's download
            result = endpoints.dry_run(args.endpoint, Path(folder), identity, settings, out, copy)
            return print_dry_run(args, result)
        deployed = endpoints.deploy_model(
            args.endpoint, Path(folder), identity, settings, args.sample, log=note
        )
    return output(args, deployed, lambda: _deployed(deployed))


def _deployed(result: dict) -> str:
    traffic = ", ".join(f"{name} {share}%" for name, share in result["traffic"].items())
    return f"{result['endpoint']}/{result['deployment']} deployed; traffic: {traffic}"


@COMMANDS.command(
    "monitor-schedule",
    "schedule Azure ML model monitoring of a deployment, with nbmill's thresholds",
    "Create an Azure ML MonitorSchedule for a deployment: data drift, prediction drift and "
    "data quality against the training data asset, with the thresholds of the monitoring "
    "pipeline (Azure ML's defaults unless changed), on the params' azure.monitor_cron, "
    "alerting azure.alert_emails.",
    arg("model", help="NAME@ALIAS or NAME/VERSION: the model whose deployment is monitored"),
    *on(ON_AZUREML, default=ON_AZUREML),
    arg("--endpoint", required=True, help="the managed online endpoint's name"),
    arg(
        "--deployment",
        help="the deployment (default: the one taking the traffic; blue in a dry run)",
    ),
    arg(
        "--training-data",
        metavar="ASSET",
        help="the reference data: an Azure ML data asset (azureml:NAME:VERSION), or a CSV file "
        "registered as MODEL-training at the model's version (default: the file the model's run "
        "trained on, found in its run folder by the sha256 the version records)",
    ),
    arg(
        "--pipeline",
        metavar="FILE",
        help="the monitoring pipeline whose thresholds apply (default: nbmill.yml's "
        "monitoring_pipeline)",
    ),
    PARAMS,
)
def cmd_monitor_schedule(args: argparse.Namespace) -> int:
    from nbmill.azure import monitoring

    target = monitoring.Monitored(
        args.model,
        args.endpoint,
        project(),
        deployment=args.deployment,
        training_data=args.training_data,
        pipeline=args.pipeline,
        params_file=args.params,
    )
    if args.dry_run:
        return print_dry_run(args, monitoring.dry_run(target, out=args.out))
    name = monitoring.create_schedule(target)
    return output(args, {"schedule": name, "endpoint": args.endpoint}, lambda: f"scheduled {name}")
