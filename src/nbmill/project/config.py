"""Project settings from ``nbmill.yml`` (optional), validated once into typed objects.

    runs_dir: runs                   # where run folders, the ledger and the spool live
    ledger: runs/ledger.jsonl
    key_metrics: [evaluate.test_r2]  # columns of `nbmill runs`
    collect_dir: collected           # where `nbmill serve` collects, and the monitor reads
    code_paths: [src, lib]           # the project's own packages, put on the import path of
                                     # a reproduction at another commit and of Azure ML jobs
                                     # (default: src/ if there is one, and the uv workspace
                                     # members named in pyproject.toml)
    monitoring_pipeline: pipelines/monitor.yml   # whose thresholds `monitor-schedule` uses
    notify:
      - name: team
        type: webhook                # POST each event
        url: ${env:NBMILL_WEBHOOK_URL}
        format: teams                # cloudevents (default), teams or slack
        events: [nbmill.run.failed, nbmill.model.*]
      - name: devops
        type: azure-devops           # logging commands; on by itself when TF_BUILD is set
      - name: lineage
        type: openlineage            # run events as OpenLineage RunEvents
        url: http://marquez:5000     # the lineage server (or ${env:NAME})
        namespace: diabetes          # default: nbmill/<project folder>
        api_key: ${env:NBMILL_LINEAGE_KEY}   # optional bearer token, always from the environment

A params file's own ``notify:`` list adds sinks for that environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nbmill._yaml import load_yaml, reject_unknown
from nbmill.errors import NbmillError
from nbmill.project.secret import EnvRef, env_ref

CONFIG_FILE = "nbmill.yml"
ENV_RUNS_DIR = "NBMILL_RUNS_DIR"  # overrides runs_dir (and with it the ledger's default place)
ENV_LEDGER = "NBMILL_LEDGER"  # overrides the ledger (a step executed in an Azure ML job)
CONFIG_KEYS = {
    "runs_dir",
    "ledger",
    "key_metrics",
    "notify",
    "collect_dir",
    "code_paths",
    "monitoring_pipeline",
    "archive",
}
ENV_ARCHIVE = "NBMILL_ARCHIVE"  # overrides archive: (a folder, or az://CONTAINER/PREFIX)
ARCHIVE_SINK = "archive"  # the sink that appends every event to the archive's ledger
LEDGER_FILE = "ledger.jsonl"  # the ledger's default place, in the runs folder
COLLECT_DIR = "collected"  # collected scoring data's default place, in the project
SINK_TYPES = ("webhook", "azure-devops", "openlineage", "archive")
FORMATS = ("cloudevents", "teams", "slack")
SINK_KEYS = {"name", "type", "url", "format", "events", "retries", "timeout_s"}
OPENLINEAGE_KEYS = {"namespace", "api_key", "endpoint"}  # only for type: openlineage
OPENLINEAGE_ENDPOINT = "api/v1/lineage"  # where the server takes RunEvents, relative to url


class ConfigError(NbmillError):
    """nbmill.yml (or a params file's notify section) is malformed."""


@dataclass(frozen=True)
class SinkConfig:
    name: str
    type: str
    url: EnvRef | str | None = None  # a plain URL only for openlineage: webhook URLs hold tokens
    format: str = "cloudevents"
    events: tuple[str, ...] = ("*",)
    retries: int = 3
    timeout_s: float = 5.0
    namespace: str | None = None  # openlineage: the jobs' namespace
    api_key: EnvRef | None = None  # openlineage: sent as a bearer token
    endpoint: str = OPENLINEAGE_ENDPOINT
    spool: Path | None = None  # archive: the spool folder whose earlier events go first

    def wants(self, event_type: str) -> bool:
        return any(
            pattern == "*"
            or pattern == event_type
            or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.events
        )


@dataclass(frozen=True)
class ProjectConfig:
    project_dir: Path
    runs_dir: Path
    ledger: Path
    notify: tuple[SinkConfig, ...] = ()
    key_metrics: tuple[str, ...] | None = None
    path: Path | None = None
    extra_sinks: tuple[SinkConfig, ...] = field(default=())
    collect_dir: Path | None = None  # None: <project>/collected
    code_paths: tuple[str, ...] = ()  # relative to the project
    monitoring_pipeline: Path | None = None
    archive: str | None = None  # where sealed records and the shared ledger go (None: nowhere)

    def __post_init__(self) -> None:
        if self.collect_dir is None:
            object.__setattr__(self, "collect_dir", self.project_dir / COLLECT_DIR)

    @property
    def spool_dir(self) -> Path:
        return self.runs_dir / ".spool"

    @property
    def deployments_dir(self) -> Path:
        """What each local deployment target serves: ``<target>.json``."""
        return self.runs_dir / "deployments"

    @property
    def sinks(self) -> tuple[SinkConfig, ...]:
        """The configured sinks, the params file's, and with an archive the sink that appends
        every event to its ledger (spooled while the archive cannot be reached)."""
        shared = (
            SinkConfig(
                ARCHIVE_SINK, ARCHIVE_SINK, url=self.archive, retries=0, spool=self.spool_dir
            ),
        )
        return self.notify + self.extra_sinks + (shared if self.archive else ())

    def with_sinks(self, raw: Any, where: str) -> ProjectConfig:
        """The same config plus the sinks of a params file's ``notify:`` section."""
        extra = parse_sinks(raw, where)
        names = {s.name for s in self.notify}
        for sink in extra:
            if sink.name in names:
                raise ConfigError(f"{where}: notify '{sink.name}' is already defined in nbmill.yml")
        return replace(self, extra_sinks=extra)

    def with_params_file(self, params_file: Any) -> ProjectConfig:
        """The config a run with this params file (a ``ParamsFile``, or None) notifies with:
        plus the sinks of its ``notify:`` section, if it has one."""
        notify = params_file.sections.get("notify") if params_file is not None else None
        return self.with_sinks(notify, str(params_file.path)) if notify else self


def tracking_uri(project_dir: Path) -> str:
    """The MLflow store: ``MLFLOW_TRACKING_URI`` if set, else a sqlite file in the project
    (no server)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project_dir) / 'mlflow.db'}"


def artifact_root(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a sqlite store, else the server decides.

    Without this, MLflow would put them in ./mlruns relative to the kernel's folder.
    """
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).parent
        return (store / "mlartifacts" / experiment).resolve().as_uri()
    return None


def load_config(project_dir: Path, runs_dir: Path | None = None) -> ProjectConfig:
    project_dir = Path(project_dir).resolve()
    path = project_dir / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path.exists():
        raw = load_yaml(path, "config", ConfigError) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        reject_unknown(raw, CONFIG_KEYS, str(path), ConfigError, "setting")
    if runs_dir is None and os.environ.get(ENV_RUNS_DIR):
        runs_dir = Path(os.environ[ENV_RUNS_DIR])
    runs = Path(runs_dir) if runs_dir else project_dir / str(raw.get("runs_dir", "runs"))
    runs = runs.resolve()
    ledger = os.environ.get(ENV_LEDGER) or raw.get("ledger")
    key_metrics = raw.get("key_metrics")
    if key_metrics is not None and not (
        isinstance(key_metrics, list) and all(isinstance(m, str) for m in key_metrics)
    ):
        raise ConfigError(f"{path}: 'key_metrics' must be a list of metric names")
    monitoring = raw.get("monitoring_pipeline")
    if monitoring is not None and not isinstance(monitoring, str):
        raise ConfigError(f"{path}: 'monitoring_pipeline' must be a pipeline file's path")
    return ProjectConfig(
        project_dir=project_dir,
        runs_dir=runs,
        ledger=(project_dir / str(ledger)).resolve() if ledger else runs / LEDGER_FILE,
        notify=parse_sinks(raw.get("notify"), str(path)),
        key_metrics=tuple(key_metrics) if key_metrics else None,
        path=path if path.exists() else None,
        collect_dir=(project_dir / str(raw.get("collect_dir", COLLECT_DIR))).resolve(),
        code_paths=_code_paths(raw.get("code_paths"), project_dir, path),
        monitoring_pipeline=project_dir / monitoring if monitoring else None,
        archive=_archive(raw.get("archive"), path, project_dir),
    )


def _archive(raw: Any, where: Path, project_dir: Path) -> str | None:
    """``NBMILL_ARCHIVE``, else nbmill.yml's ``archive:``."""
    value = os.environ.get(ENV_ARCHIVE) or raw
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: 'archive' must be a folder or az://CONTAINER/PREFIX")
    return archive_location(value, project_dir)


def archive_location(value: str, project_dir: Path) -> str:
    """An archive's URL as given (az://CONTAINER/PREFIX, file://...), or a folder's absolute
    path (a relative one is relative to the project)."""
    return value if "://" in value else str((Path(project_dir) / value).resolve())


def _code_paths(raw: Any, project_dir: Path, where: Path) -> tuple[str, ...]:
    """The folders of the project's own packages, relative to it: as given, else ``src`` (if
    there is one) and the uv workspace members of pyproject.toml."""
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
            raise ConfigError(f"{where}: 'code_paths' must be a list of folders in the project")
        return tuple(raw)
    found = ["src"] if (project_dir / "src").is_dir() else []
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{pyproject}: not valid TOML ({exc})") from None
        members = tool.get("uv", {}).get("workspace", {}).get("members", [])
        for pattern in (m for m in members if isinstance(m, str)):  # a member may be a glob
            folders = sorted(p for p in project_dir.glob(pattern) if p.is_dir())
            found += [folder.relative_to(project_dir).as_posix() for folder in folders]
    return tuple(found)


def parse_sinks(raw: Any, where: str) -> tuple[SinkConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'notify' must be a list of sinks")
    sinks, names = [], set()
    for index, item in enumerate(raw, start=1):
        sink = _parse_sink(item, f"{where}: notify #{index}")
        if sink.name in names:
            raise ConfigError(f"{where}: notify '{sink.name}' is defined twice")
        names.add(sink.name)
        sinks.append(sink)
    return tuple(sinks)


def _parse_sink(item: Any, at: str) -> SinkConfig:
    if not isinstance(item, dict):
        raise ConfigError(f"{at}: expected a mapping with 'name' and 'type'")
    if item.get("type") == "openlineage":
        reject_unknown(item, (SINK_KEYS - {"format"}) | OPENLINEAGE_KEYS, at, ConfigError)
    else:
        misplaced = sorted(OPENLINEAGE_KEYS & set(item))
        hint = f"{', '.join(misplaced)}: for type: openlineage" if misplaced else ""
        reject_unknown(item, SINK_KEYS, at, ConfigError, hint=hint)
    name, kind = item.get("name"), item.get("type")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{at}: 'name' is required")
    at = f"{at.rsplit(':', 1)[0]}: notify '{name}'"
    if kind not in SINK_TYPES:
        raise ConfigError(f"{at}: 'type' must be one of {', '.join(SINK_TYPES)}, got {kind!r}")
    url = None
    if kind == "webhook":
        url = env_ref(item.get("url"))
        if url is None:
            raise ConfigError(
                f"{at}: 'url' must be an environment reference such as "
                "${env:NBMILL_WEBHOOK_URL}, "
                "so that the URL and its token stay out of the repository, records and logs"
            )
    options: dict[str, Any] = {}
    if kind == "openlineage":
        url, options = _openlineage(item, at)
    fmt = item.get("format", "cloudevents")
    if fmt not in FORMATS:
        raise ConfigError(f"{at}: 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    events = item.get("events", ["*"])
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"{at}: 'events' must be a list of event types (nbmill.run.* style)")
    retries, timeout = item.get("retries", 3), item.get("timeout_s", 5.0)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{at}: 'retries' must be a whole number >= 0")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{at}: 'timeout_s' must be a positive number of seconds")
    return SinkConfig(name, kind, url, fmt, tuple(events), retries, float(timeout), **options)


def _openlineage(item: dict[str, Any], at: str) -> tuple[EnvRef | str, dict[str, Any]]:
    """An OpenLineage server's URL (plain, or from the environment), namespace, key, endpoint."""
    raw = item.get("url")
    url = env_ref(raw)
    if url is None:
        try:
            parts = urlsplit(raw.strip()) if isinstance(raw, str) else None
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{at}: 'url' must be the lineage server's http(s) URL, such as "
                f"http://marquez:5000, or an environment reference such as ${{env:NAME}}"
            )
        if parts.username or parts.password or parts.query:
            raise ConfigError(
                f"{at}: 'url' must not carry credentials or a query; put a token in "
                "'api_key: ${env:NAME}', or the whole URL in ${env:NAME}"
            )
        url = raw.strip()
    namespace = item.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
        raise ConfigError(f"{at}: 'namespace' must be a non-empty name, such as 'diabetes'")
    api_key = None
    if "api_key" in item:
        api_key = env_ref(item["api_key"])
        if api_key is None:
            raise ConfigError(
                f"{at}: 'api_key' must be an environment reference such as "
                "${env:NBMILL_LINEAGE_KEY}, so that the key stays out of the repository, "
                "records and logs"
            )
    endpoint = item.get("endpoint", OPENLINEAGE_ENDPOINT)
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(f"{at}: 'endpoint' must be a path such as {OPENLINEAGE_ENDPOINT}")
    return url, {
        "namespace": namespace.strip() if namespace else None,
        "api_key": api_key,
        "endpoint": endpoint.strip(),
    }
