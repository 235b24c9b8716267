"""OpenLineage: a run's lifecycle events as RunEvents, sent with the openlineage-python client
to a lineage server such as Marquez.

    nbmill.run.started     START     job <pipeline>
    nbmill.run.completed   COMPLETE  job <pipeline>; outputs: every file the record hashes
    nbmill.run.failed      FAIL      (ABORT if interrupted), with the error
    nbmill.step.completed  COMPLETE  job <pipeline>.<step>, a child of the pipeline's run;
    nbmill.step.failed     FAIL      inputs and outputs: the files the step read and wrote

A pipeline's inputs are made by its own steps, so a pipeline run reads no outside dataset. A
dataset is a file of the run folder: its namespace is the job's, its name the file's path in the
run folder, and its sha256 rides along as the ``nbmill_file`` facet (and as its version). The
OpenLineage runId is a UUID derived from nbmill's run id, so every event of a run, and every
redelivery, lands on the same run. A step event is sent when its data names the pipeline (the
parent job); other event types are not lineage and are not sent.

Spooling and retries are the Notifier's (``governance/events.py``); ``send`` posts once. This
module loads the openlineage-python client: the registry imports it only where a sink of type
``openlineage`` is configured.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

import attr
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    processing_engine_run,
)
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpConfig,
    HttpTransport,
    TokenProvider,
)

from nbmill import __version__
from nbmill.governance.sinks.base import DeliveryError, Sink

PRODUCER = f"urn:nbmill:{__version__}"
SCHEMA_ID = "urn:nbmill:openlineage-facets:1-0-0"
RUN_UUIDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:nbmill:run")
STATES = {
    "nbmill.run.started": RunState.START,
    "nbmill.run.completed": RunState.COMPLETE,
    "nbmill.run.failed": RunState.FAIL,
    "nbmill.step.completed": RunState.COMPLETE,
    "nbmill.step.failed": RunState.FAIL,
}
# nbmill's own retries and backoff apply (governance/events.py), so the client's are off.
NO_RETRIES = {"total": 0}
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


@attr.define
class FileDatasetFacet(DatasetFacet):
    """A file of a run folder: its sha256, and the nbmill run whose folder holds it."""

    sha256: str
    run: str

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_ID}#/$defs/FileDatasetFacet"


@attr.define
class NbmillRunFacet(RunFacet):
    """What the run record says of this run (or step): who, why, the commit, params, metrics."""

    run: str
    status: str | None = attr.field(default=None)
    step: str | None = attr.field(default=None)
    who: str | None = attr.field(default=None)
    why: str | None = attr.field(default=None)
    commit: str | None = attr.field(default=None)
    params: dict[str, Any] | None = attr.field(default=None)
    metrics: dict[str, Any] | None = attr.field(default=None)
    durationSeconds: float | None = attr.field(default=None)  # noqa: N815 (OpenLineage casing)
    _additional_skip_redact: ClassVar[list[str]] = ["run", "status", "step"]

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_ID}#/$defs/NbmillRunFacet"


_BASE = {
    "_producer": {"type": "string", "format": "uri"},
    "_schemaURL": {"type": "string", "format": "uri"},
}
FACET_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "$defs": {
        "FileDatasetFacet": {
            "description": "A file of an nbmill run folder and its sha256.",
            "type": "object",
            "properties": {
                **_BASE,
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "run": {"type": "string", "description": "the nbmill run id"},
            },
            "required": ["_producer", "_schemaURL", "sha256", "run"],
        },
        "NbmillRunFacet": {
            "description": "An nbmill run (or step) as its record describes it.",
            "type": "object",
            "properties": {
                **_BASE,
                "run": {"type": "string", "description": "the nbmill run id"},
                "status": {"type": "string"},
                "step": {"type": "string"},
                "who": {"type": "string"},
                "why": {"type": "string"},
                "commit": {"type": ["string", "null"]},
                "params": {"type": "object"},
                "metrics": {"type": "object"},
                "durationSeconds": {"type": "number"},
            },
            "required": ["_producer", "_schemaURL", "run"],
        },
    },
}


def is_lineage(event: dict[str, Any]) -> bool:
    """Whether this event is lineage: a run's or a step's, whose data names the run and its
    pipeline (the job)."""
    data = event.get("data") or {}
    return event.get("type") in STATES and bool(data.get("run_id")) and bool(data.get("pipeline"))


def run_uuid(run_id: str, step: str | None = None) -> str:
    """The OpenLineage runId of an nbmill run (or of one step of it): the same every time."""
    return str(uuid.uuid5(RUN_UUIDS, run_id if step is None else f"{run_id}/steps/{step}"))


def default_namespace(event: dict[str, Any]) -> str:
    """``nbmill/<project folder>``, from the event's source (``/nbmill/<host>/<project>``)."""
    project = str(event.get("source", "")).rstrip("/").rsplit("/", 1)[-1]
    return f"nbmill/{_NOT_IN_A_NAME.sub('-', project) or 'project'}"


def run_event(event: dict[str, Any], namespace: str) -> RunEvent:
    """The OpenLineage RunEvent of an nbmill lifecycle event (one that ``is_lineage``)."""
    if not is_lineage(event):
        raise DeliveryError(f"{event.get('type')} is not a lineage event; nothing to send")
    data = event["data"]
    run_id, step = data["run_id"], data.get("step")
    state = STATES[event["type"]]
    if state is RunState.FAIL and data.get("status") == "interrupted":
        state = RunState.ABORT
    facets: dict[str, RunFacet] = {
        "nbmill_run": _run_facet(data, step),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__,
            name="nbmill",
            openlineageAdapterVersion=__version__,
            producer=PRODUCER,
        ),
    }
    if data.get("error"):
        facets["errorMessage"] = _error_facet(data["error"], step)
    job_name = data["pipeline"] if step is None else f"{data['pipeline']}.{step}"
    if step is not None:
        facets["parent"] = _parent_facet(namespace, data["pipeline"], run_uuid(run_id))
        inputs, outputs = data.get("inputs") or {}, data.get("outputs") or {}
    else:
        inputs, outputs = {}, dict(data.get("files") or {})
        if data.get("run_json_sha256"):
            outputs["run.json"] = data["run_json_sha256"]
    return RunEvent(
        eventType=state,
        eventTime=event["time"],
        run=Run(runId=run_uuid(run_id, step), facets=facets),
        job=Job(
            namespace=namespace,
            name=job_name,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH",
                    integration="NBMILL",
                    jobType="DAG" if step is None else "TASK",
                    producer=PRODUCER,
                )
            },
        ),
        inputs=[
            InputDataset(namespace, rel, facets=_file_facets(run_id, digest))
            for rel, digest in sorted(inputs.items())
        ],
        outputs=[
            OutputDataset(namespace, rel, facets=_file_facets(run_id, digest))
            for rel, digest in sorted(outputs.items())
        ],
        producer=PRODUCER,
    )


class OpenLineage(Sink):
    """A lineage server: the run and step events it is asked for, as RunEvents; spooled and
    retried."""

    def accepts(self, event: dict[str, Any]) -> bool:
        """The events asked for that are lineage (``is_lineage``); others are not sent."""
        return super().accepts(event) and is_lineage(event)

    def send(self, event: dict[str, Any]) -> None:
        """POST the RunEvent once; DeliveryError unless the server answers 2xx. Neither the URL
        nor the key ever appears in an error."""
        sink, url = self.config, self.url()
        auth = TokenProvider({})
        if sink.api_key is not None:
            key = sink.api_key.value()
            if not key:
                raise DeliveryError(f"{sink.api_key.name} is not set")
            auth = ApiKeyTokenProvider({"apiKey": key})
        lineage = run_event(event, sink.namespace or default_namespace(event))
        config = HttpConfig(
            url=url, endpoint=sink.endpoint, timeout=sink.timeout_s, auth=auth, retry=NO_RETRIES
        )
        try:
            transport = HttpTransport(config)
        except ValueError:
            raise DeliveryError(
                f"openlineage '{sink.name}': {self.url_name} is not an http(s) URL"
            ) from None
        try:
            client = OpenLineageClient(transport=transport)
            if client.transport is not transport:  # OPENLINEAGE_DISABLED is set: keep it spooled
                kind = client.transport.kind
                raise DeliveryError(f"OpenLineage is switched off ({kind} transport)")
            client.emit(lineage)
        except requests.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.response.status_code}") from None
        except (requests.RequestException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {_reason(exc)}") from None
        except ValueError as exc:  # the client's own configuration (openlineage.yml) is malformed
            raise DeliveryError(f"OpenLineage client: {exc}") from None
        finally:
            transport.close()


def _run_facet(data: dict[str, Any], step: str | None) -> NbmillRunFacet:
    params = data.get("params")
    return NbmillRunFacet(
        run=data["run_id"],
        status=data.get("status") or ("running" if step is None else None),
        step=step,
        who=data.get("who"),
        why=data.get("why"),
        commit=data.get("commit"),
        params=params or None,
        metrics=data.get("metrics") or None,
        durationSeconds=data.get("duration_s"),
        producer=PRODUCER,
    )


def _error_facet(
    error: dict[str, Any] | str, step: str | None
) -> error_message_run.ErrorMessageRunFacet:
    """The runner's error ({step, type, message, cell}), or an error given as text."""
    if isinstance(error, dict):
        where = error.get("step") or step
        cell = f" (cell {error['cell']})" if error.get("cell") is not None else ""
        message = f"step '{where}'{cell}: {error.get('type')}: {error.get('message')}"
    else:
        message = f"step '{step}': {error}" if step else str(error)
    return error_message_run.ErrorMessageRunFacet(
        message=message,
        programmingLanguage="python",
        producer=PRODUCER,
    )


def _parent_facet(namespace: str, pipeline: str, parent_id: str) -> parent_run.ParentRunFacet:
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent_id),
        job=parent_run.Job(namespace=namespace, name=pipeline),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=parent_id),
            job=parent_run.RootJob(namespace=namespace, name=pipeline),
        ),
        producer=PRODUCER,
    )


def _file_facets(run_id: str, digest: str) -> dict[str, DatasetFacet]:
    return {
        "nbmill_file": FileDatasetFacet(sha256=digest, run=run_id, producer=PRODUCER),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=digest, producer=PRODUCER
        ),
    }


def _reason(exc: Exception) -> str:
    """The cause without the URL: ``Failed to establish a new connection: ... refused``."""
    cause = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", cause)
    return str(cause).rsplit("): ", 1)[-1]
