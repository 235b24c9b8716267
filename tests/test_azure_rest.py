"""Microsoft's REST contract: the bodies azure-ai-ml would send for the endpoint, the deployment and
the monitor schedule (``_to_rest_object``), validated against those definitions of Azure ML's
published OpenAPI specification, at the API version the SDK sends each with
(``schemas/azureml-rest/``: subsets cut by ``cut.py`` from Azure/azure-rest-api-specs, MIT).

Azure Resource Manager compares enum values without regard to case (the SDK sends
``"regression"`` where the specification lists ``"Regression"``), so string enums are checked
that way here; any other value is still refused."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import ROOT

pytest.importorskip("azure.ai.ml", reason="the azure dependency group is not installed")

from nbmill.azure import endpoints, monitoring  # noqa: E402
from nbmill.azure.settings import AzureSettings  # noqa: E402
from nbmill.monitor.thresholds import Thresholds  # noqa: E402

SPECS = ROOT / "schemas" / "azureml-rest"
ENDPOINT = ("2022-02-01-preview", "OnlineEndpointTrackedResource")
DEPLOYMENT = ("2023-04-01-preview", "OnlineDeploymentTrackedResource")
SCHEDULE = ("2023-06-01-preview", "ScheduleResource")


def _case_insensitive(node):
    if isinstance(node, dict):
        node = {key: _case_insensitive(value) for key, value in node.items()}
        values = node.get("enum")
        if values and all(isinstance(v, str) for v in values):
            del node["enum"]
            node["pattern"] = "(?i)^(" + "|".join(re.escape(v) for v in values) + ")$"
        return node
    if isinstance(node, list):
        return [_case_insensitive(item) for item in node]
    return node


@cache
def validator(version: str, root: str) -> jsonschema.Draft202012Validator:
    schema = _case_insensitive(json.loads((SPECS / f"{version}.subset.json").read_text()))
    schema["$ref"] = f"#/$defs/{root}"
    return jsonschema.Draft202012Validator(schema)


def problems(spec: tuple[str, str], body: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator(*spec).iter_errors(body)
    ]


def wire(rest_object) -> dict:
    """The JSON the SDK's client would put on the wire."""
    return json.loads(json.dumps(rest_object.as_dict(), default=str))


def endpoint_body() -> dict:
    return wire(endpoints.endpoint_entity("diabetes", {"blue": 100})._to_rest_online_endpoint("we"))


def deployment_body(registered: bool) -> dict:
    entity = endpoints.deployment_entity(
        "blue", "diabetes", Path("/tmp"), AzureSettings(), {"model": "m", "version": "3"},
        registered=registered,
    )  # fmt: skip
    return wire(entity._to_rest_object("we"))


def schedule_body() -> dict:
    settings = AzureSettings(alert_emails=["ops@example.com"], target_column="target")
    schedule = monitoring.schedule_entity(
        "diabetes-monitor", "diabetes", "blue", "azureml:diabetes-training:3", Thresholds(),
        settings,
    )  # fmt: skip
    return wire(schedule._to_rest_object())


def test_the_subsets_are_shipped_with_their_licence_and_source():
    assert "MIT License" in (SPECS / "LICENSE").read_text()
    readme = (SPECS / "README.md").read_text()
    assert "Azure/azure-rest-api-specs" in readme and "cut.py" in readme


def test_the_endpoint_body_is_what_azure_ml_accepts():
    body = endpoint_body()
    assert problems(ENDPOINT, body) == []
    assert body["properties"]["authMode"] == "Key"


def test_the_deployment_body_is_what_azure_ml_accepts_registered_or_not():
    for registered in (True, False):
        body = deployment_body(registered)
        assert problems(DEPLOYMENT, body) == []
        collections = body["properties"]["dataCollector"]["collections"]
        assert set(collections) == {"model_inputs", "model_outputs"}
    assert deployment_body(True)["properties"]["model"] == "azureml:m:3"


def test_the_schedule_body_is_what_azure_ml_accepts():
    body = schedule_body()
    assert problems(SCHEDULE, body) == []
    signals = body["properties"]["action"]["monitorDefinition"]["signals"]
    assert set(signals) == {"data-drift", "prediction-drift", "data-quality"}
    drift = signals["data-drift"]
    assert drift["productionData"]["uri"] == "azureml:diabetes-blue-model_inputs:1"
    assert signals["prediction-drift"]["productionData"]["uri"].endswith("-model_outputs:1")
    assert drift["referenceData"]["columns"] == {"target_column": "target"}


@pytest.mark.parametrize(
    ("spec", "body", "change", "where"),
    [
        (ENDPOINT, endpoint_body,
         lambda b: b["properties"].update(authMode="Kerberos"), "authMode"),
        (ENDPOINT, endpoint_body, lambda b: b.pop("location"), "location"),
        (DEPLOYMENT, lambda: deployment_body(True),
         lambda b: b["properties"].update(endpointComputeType="Quantum"), "properties"),
        (SCHEDULE, schedule_body,
         lambda b: b["properties"]["action"]["monitorDefinition"]["signals"]["data-drift"].pop(
             "productionData"), "data-drift"),
        (SCHEDULE, schedule_body,
         lambda b: b["properties"]["action"]["monitorDefinition"]["monitoringTarget"].update(
             taskType="Astrology"), "monitoringTarget"),
    ],
    ids=["unknown auth mode", "no location", "unknown compute type",
         "drift without production data", "unknown task type"],
)  # fmt: skip
def test_a_body_azure_ml_would_refuse_is_refused(spec, body, change, where):
    broken = body()
    change(broken)
    found = problems(spec, broken)
    assert found and any(where in problem for problem in found), found
