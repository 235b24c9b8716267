"""Managed online endpoints, blue/green: a new deployment at 0% traffic, a smoke test against it
by name, then traffic moved to it (through a mirror first, if asked), the old one kept for
rollback. A failure before the switch leaves traffic where it was.

The rollout is planned by pure functions (``plan_rollout``, ``check_traffic``): the SDK checks a
file's shape offline, not whether its traffic adds up, so nbmill checks that itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nbmill.azure import sdk
from nbmill.azure.dry_run import DryRun
from nbmill.azure.settings import AzureSettings, Workspace
from nbmill.collection import INPUTS, OUTPUTS
from nbmill.errors import NbmillError

COLORS = ("blue", "green")


@dataclass(frozen=True)
class Rollout:
    """From the endpoint's traffic now to all of it on ``new``."""

    endpoint: str
    new: str
    old: str | None
    before: dict[str, int]
    mirror: dict[str, int] = field(default_factory=dict)

    @property
    def after(self) -> dict[str, int]:
        return {**{name: 0 for name in self.before}, self.new: 100}


def plan_rollout(
    endpoint: str, traffic: dict[str, int], deployments: set[str], mirror_percent: int = 0
) -> Rollout:
    """The next colour: the one not serving (blue first); the serving one is kept."""
    live = [name for name, share in traffic.items() if share > 0]
    old = max(live, key=lambda name: traffic[name]) if live else None
    new = next((c for c in COLORS if c != old), COLORS[0])
    if old is not None and old not in COLORS:
        new = COLORS[0]
    before = {name: traffic.get(name, 0) for name in sorted(deployments | {new})}
    before[new] = 0
    mirror = {new: mirror_percent} if mirror_percent and old else {}
    rollout = Rollout(endpoint, new, old, before, mirror)
    for stage, mirrored in ((rollout.before, mirror), (rollout.after, {})):
        problems = check_traffic(stage, mirrored, deployments | {new})
        if problems:
            raise NbmillError(f"endpoint '{endpoint}': " + "; ".join(problems))
    return rollout


def check_traffic(
    traffic: dict[str, int], mirror: dict[str, int], deployments: set[str]
) -> list[str]:
    """What is wrong with an endpoint's traffic (nothing: []): shares are whole percents that
    sum to 100 (or 0, with no deployment live), mirroring is at most 50% and goes to a
    deployment that takes no live traffic, and every deployment named exists."""
    problems = []
    for name, share in {**traffic, **mirror}.items():
        if not isinstance(share, int) or not 0 <= share <= 100:
            problems.append(f"traffic to '{name}' is {share!r}: give a whole percent 0-100")
        if name not in deployments:
            problems.append(f"traffic goes to '{name}', which is not a deployment of it")
    total = sum(v for v in traffic.values() if isinstance(v, int))
    if total not in (0, 100):
        problems.append(f"traffic sums to {total}%, not 100%")
    for name, share in mirror.items():
        if isinstance(share, int) and share > 50:
            problems.append(f"mirror traffic to '{name}' is {share}%: at most 50%")
        if traffic.get(name, 0) > 0:
            problems.append(f"'{name}' takes live traffic: it cannot also be mirrored to")
    return problems


def data_collector():
    """Collect the inputs and outputs under the names Azure ML monitoring requires. Build one
    for each call to the SDK: its ``_to_rest_object`` cannot be called twice on one object."""
    sdk()
    from azure.ai.ml.entities import DataCollector, DeploymentCollection

    return DataCollector(
        collections={
            INPUTS: DeploymentCollection(enabled="true"),
            OUTPUTS: DeploymentCollection(enabled="true"),
        },
        sampling_rate=1.0,
    )


def endpoint_entity(name: str, traffic: dict[str, int], mirror: dict[str, int] | None = None):
    sdk()
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    return ManagedOnlineEndpoint(
        name=name,
        auth_mode="key",
        description="nbmill: a model served blue/green",
        traffic=dict(traffic),
        mirror_traffic=dict(mirror or {}),
    )


WORKSPACE_TRACKING = "azureml://"


def in_workspace_registry() -> bool:
    """Whether MLflow's registry is the workspace's (an ``azureml://`` tracking URI): then each
    version a run registered is already an Azure ML model version, of the same name and number."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").startswith(WORKSPACE_TRACKING)


def model_for(model_dir: Path, identity: dict[str, Any], registered: bool | None = None):
    """What a deployment serves: the registered version itself (``azureml:NAME:VERSION``) when
    the registry is the workspace's, so Azure ML registers no copy of it; else the model's
    files, which the SDK registers as a new version of an Azure ML model of the same name,
    tagged with nbmill's name and version for the trail back."""
    registered = in_workspace_registry() if registered is None else registered
    name, version = identity.get("model"), identity.get("version")
    if registered:
        if not (name and version):
            raise NbmillError(f"a registered model needs a name and a version, got {identity}")
        return f"azureml:{name}:{version}"
    from azure.ai.ml.entities import Model

    return Model(
        path=str(model_dir),
        type="mlflow_model",
        name=name,
        description=f"nbmill: {name} version {version}",
        tags={f"nbmill.{k}": str(v) for k, v in identity.items() if v is not None},
    )


def deployment_entity(
    name: str,
    endpoint: str,
    model_dir: Path,
    settings: AzureSettings,
    identity: dict[str, Any],
    registered: bool | None = None,
):
    """A no-code MLflow deployment of the model (Azure ML builds its environment from the
    model's own requirements), collecting its inputs and outputs; ``registered``: serve the
    workspace's registered version (default: when the MLflow registry is the workspace's)."""
    sdk()
    from azure.ai.ml.entities import ManagedOnlineDeployment

    model = model_for(model_dir, identity, registered)
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        instance_type=settings.endpoint_instance_type,
        instance_count=settings.endpoint_instance_count,
        data_collector=data_collector(),
        tags={k: str(v) for k, v in identity.items() if v is not None},
    )


def write(rollout: Rollout, model_dir: Path, settings: AzureSettings, identity: dict, out: Path):
    """The endpoint (at its traffic after the switch) and the new deployment, as YAML."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # ManagedOnlineEndpoint.dump returns the YAML's dict and writes nothing, whatever `dest`.
    endpoint = endpoint_entity(rollout.endpoint, rollout.after).dump()
    text = yaml.safe_dump(json.loads(json.dumps(endpoint)), sort_keys=False)
    (out / "endpoint.yml").write_text(text, encoding="utf-8")
    deployment = deployment_entity(rollout.new, rollout.endpoint, model_dir, settings, identity)
    written = out / f"deployment-{rollout.new}.yml"
    deployment.dump(written)
    document = yaml.safe_load(written.read_text(encoding="utf-8"))
    model = document.get("model")
    if isinstance(model, dict) and Path(str(model.get("path", ""))).is_absolute():
        # The SDK writes the model folder's absolute path; relative to the file, the folder
        # goes with it (the dry run copies the model beside it).
        model["path"] = os.path.relpath(model["path"], out.resolve())
        written.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    plan = {"endpoint": rollout.endpoint, "new": rollout.new, "old": rollout.old}
    plan.update(before=rollout.before, mirror=rollout.mirror, after=rollout.after)
    (out / "rollout.yml").write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    return out


def validate(out: Path) -> list[str]:
    """Load the endpoint and deployment files back with the SDK's loaders, and check the
    traffic of every stage of the rollout (the SDK does not, offline)."""
    ml = sdk()
    out = Path(out)
    problems: list[str] = []
    deployments = set()
    for path in sorted(out.glob("deployment-*.yml")):
        try:
            deployment = ml.load_online_deployment(source=str(path))
        except Exception as exc:
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        deployments.add(deployment.name)
        collections = set(
            (deployment.data_collector.collections or {}) if deployment.data_collector else ()
        )
        if not {INPUTS, OUTPUTS} <= collections:
            problems.append(
                f"{path.name}: collects {sorted(collections)}, not {INPUTS} and {OUTPUTS}"
            )
    try:
        endpoint = ml.load_online_endpoint(source=str(out / "endpoint.yml"))
    except Exception as exc:
        return [*problems, f"endpoint.yml: {type(exc).__name__}: {exc}"]
    plan = yaml.safe_load((out / "rollout.yml").read_text(encoding="utf-8")) or {}
    known = deployments | set(plan.get("before") or {})
    if endpoint.auth_mode != "key":
        problems.append(f"endpoint.yml: auth_mode is {endpoint.auth_mode!r}, not key")
    stages = [("endpoint.yml", endpoint.traffic or {}, endpoint.mirror_traffic or {})]
    stages.append(("rollout before", plan.get("before") or {}, plan.get("mirror") or {}))
    for where, traffic, mirror in stages:
        problems += [f"{where}: {p}" for p in check_traffic(traffic, mirror, known)]
    return problems


def sample(model_dir: Path) -> dict:
    """A one-row request of typical values, from the model's baseline profile (the median bin
    edge of each numeric feature, the most frequent category): for a smoke test."""
    from nbmill.collection import find_baseline
    from nbmill.monitor.profile import Profile

    profile = Profile.load(find_baseline(model_dir))
    row = []
    for feature in profile.features.values():
        if feature.kind == "numeric":
            row.append(feature.edges[len(feature.edges) // 2] if feature.edges else 0.0)
        else:
            row.append(max(feature.categories, key=feature.categories.get, default=""))
    return {"input_data": {"columns": list(profile.features), "data": [row]}}


def deploy(
    workspace,
    endpoint: str,
    model_dir: Path,
    settings: AzureSettings,
    identity: dict[str, Any],
    sample: dict,
    log=print,
) -> dict[str, Any]:
    """Blue/green to a managed online endpoint (live: needs a workspace). The endpoint is
    created or updated, never left as it was made once."""
    from azure.core.exceptions import ResourceNotFoundError

    client = workspace.client()
    try:
        current = client.online_endpoints.get(endpoint)
        traffic = dict(current.traffic or {})
    except ResourceNotFoundError:
        traffic = {}
    found = list(client.online_deployments.list(endpoint)) if traffic else []
    deployments = {d.name for d in found}
    live = [d for d in found if traffic.get(d.name, 0) == 100]
    if live and (live[0].tags or {}).get("version") == str(identity.get("version")):
        log(f"{endpoint}/{live[0].name} already serves version {identity.get('version')}")
        return {"endpoint": endpoint, "deployment": live[0].name, "traffic": traffic}
    rollout = plan_rollout(endpoint, traffic, deployments, settings.mirror_percent)
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(endpoint, rollout.before)
    ).result()
    deployment = deployment_entity(rollout.new, endpoint, model_dir, settings, identity)
    client.online_deployments.begin_create_or_update(deployment).result()
    log(f"{endpoint}/{rollout.new}: deployed at 0% traffic; smoke test")
    request = Path(model_dir).parent / ".nbmill-smoke-request.json"
    request.write_text(json.dumps(sample), encoding="utf-8")
    try:
        answer = client.online_endpoints.invoke(
            endpoint_name=endpoint, deployment_name=rollout.new, request_file=str(request)
        )
    finally:
        request.unlink(missing_ok=True)
    if not json.loads(answer):
        raise NbmillError(f"{endpoint}/{rollout.new}: the smoke test got an empty answer")
    try:
        if rollout.mirror:
            client.online_endpoints.begin_create_or_update(
                endpoint_entity(endpoint, rollout.before, rollout.mirror)
            ).result()
            log(f"{endpoint}: mirroring {rollout.mirror} to {rollout.new}")
        client.online_endpoints.begin_create_or_update(
            endpoint_entity(endpoint, rollout.after)
        ).result()
    except Exception:
        # Traffic goes back to where it was; the new deployment stays for a look.
        client.online_endpoints.begin_create_or_update(
            endpoint_entity(endpoint, rollout.before)
        ).result()
        raise
    return {"endpoint": endpoint, "deployment": rollout.new, "previous": rollout.old,
            "traffic": rollout.after}  # fmt: skip


def dry_run(
    endpoint: str,
    model_dir: Path,
    identity: dict[str, Any],
    settings: AzureSettings,
    out: Path,
    copy_model: bool = False,
) -> DryRun:
    """The endpoint and a first deployment of the model, written to ``out`` and checked.
    ``copy_model``: put the model's files beside the YAML (for a registered model's download,
    which is gone once the caller's ``with`` block ends)."""
    import shutil

    out = Path(out)
    if copy_model:
        target = out / "model"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target)
        model_dir = target.resolve()
    rollout = plan_rollout(endpoint, {}, set(), settings.mirror_percent)
    write(rollout, model_dir, settings, identity, out)
    return DryRun("endpoint and deployment", out, validate(out))


def deploy_model(
    endpoint: str,
    model_dir: Path,
    identity: dict[str, Any],
    settings: AzureSettings,
    sample_file: Path | None = None,
    log=print,
) -> dict[str, Any]:
    """``deploy`` to the workspace the environment names; the smoke request is
    ``sample_file`` (JSON), else one typical row from the model's baseline."""
    request = json.loads(Path(sample_file).read_text()) if sample_file else sample(model_dir)
    return deploy(
        Workspace.from_environment(), endpoint, model_dir, settings, identity, request, log
    )
