"""Azure settings: the workspace from the environment, and the ``azure:`` section of a params
file (compute, experiment, endpoint sizes, monitoring), typed and checked at the edge."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbmill.errors import NbmillError

WORKSPACE_VARIABLES = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


class AzureSettings(BaseModel):
    """The ``azure:`` section of a params file."""

    model_config = ConfigDict(extra="forbid")
    compute: str = "serverless"  # a compute cluster's name, or serverless
    instance_type: str | None = None  # for serverless jobs, e.g. Standard_DS3_v2
    experiment: str | None = None  # default: the pipeline's name
    image: str = IMAGE
    endpoint_instance_type: str = "Standard_DS3_v2"
    endpoint_instance_count: int = Field(1, ge=1)
    mirror_percent: int = Field(0, ge=0, le=50)  # mirrored to the new deployment before the switch
    monitor_cron: str = "0 6 * * *"
    monitor_compute: str = "standard_e4s_v3"
    monitor_spark_runtime: str = "3.4"
    alert_emails: list[str] = []  # required to create a schedule: nobody is alerted otherwise
    target_column: str | None = None  # the training data's label, for monitoring's reference


def settings_from(sections: dict[str, Any] | None, where: str = "params") -> AzureSettings:
    try:
        return AzureSettings(**((sections or {}).get("azure") or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NbmillError(f"{where}: azure: {problems}") from None
    except TypeError:
        raise NbmillError(f"{where}: 'azure' must be a mapping of settings") from None


def settings_of(params_file: str | None) -> AzureSettings:
    """The ``azure:`` section of a params file (the defaults without one)."""
    from nbmill.project.params import load_params_file

    if not params_file:
        return settings_from({})
    return settings_from(load_params_file(params_file).sections, params_file)


@dataclass(frozen=True)
class Workspace:
    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def from_environment(cls) -> Workspace:
        missing = [v for v in WORKSPACE_VARIABLES if not os.environ.get(v)]
        if missing:
            raise NbmillError(
                f"no Azure ML workspace: set {', '.join(missing)} (and sign in so that "
                "DefaultAzureCredential works), or use --dry-run to write the YAML only"
            )
        return cls(*(os.environ[v] for v in WORKSPACE_VARIABLES))

    def client(self):
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        return MLClient(
            DefaultAzureCredential(), self.subscription_id, self.resource_group, self.name
        )


def configured() -> bool:
    """Whether the workspace variables are all set (live calls, and their tests)."""
    return all(os.environ.get(v) for v in WORKSPACE_VARIABLES)
