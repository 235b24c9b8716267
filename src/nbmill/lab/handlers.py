"""The REST API under ``/nbmill/api/``, on Jupyter Server's own authentication (its token or
password: no second key), for the project the server was started in.

    GET    pipelines            the pipelines (with their steps), the parameter sets, and
                                where the runs folder is under the server's root
    GET    runs?limit=N         recent runs: id, when, who, why, status, key metrics
    GET    runs/ID              one run's run.json (``nbmill show --json``)
    GET    diff?a=ID&b=ID       two runs compared (``nbmill diff``), as text and as data
    POST   runs                 start ``nbmill run``: {"pipeline", "params", "overrides",
                                "reason", "force", "force_all", "only"}; answers the job
                                (one step: only [S] and force [S]; from a step: force [S])
    GET    jobs/ID              the job: running, done or failed, and its run.json as it is now
    DELETE jobs/ID              cancel it (SIGTERM: the record says ``interrupted``)
    GET    notebook?path=P      the pipeline steps that use notebook P, with their parameters,
                                or what is wrong with them
"""

from __future__ import annotations

import atexit
import json
import threading
from pathlib import Path
from typing import Any

import tornado
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbmill.errors import NbmillError
from nbmill.lab import project as lab
from nbmill.lab.jobs import Jobs

PREFIX = "nbmill/api"


class Handler(APIHandler):
    def initialize(self, context: dict[str, Any]) -> None:
        self.context = context

    @property
    def project(self) -> Path:
        return self.context["project"]

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def refuse(self, status: int, message: str) -> None:
        self.reply({"error": message}, status)

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return data


class Pipelines(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({**lab.pipelines(self.project), "runs_path": self.context["runs_path"]})


class Run(Handler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        from nbmill.records.review import find_run

        try:
            self.reply(find_run(self.context["runs_dir"], run_id))
        except NbmillError as exc:
            self.refuse(404, str(exc))


class Diff(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        from nbmill.records.review import diff_runs, find_run
        from nbmill.records.text import format_diff

        runs_dir = self.context["runs_dir"]
        try:
            a, b = (find_run(runs_dir, self.get_argument(x)) for x in ("a", "b"))
        except NbmillError as exc:
            return self.refuse(404, str(exc))
        diff = diff_runs(a, b)
        self.reply({"diff": diff, "text": format_diff(diff)})


class Runs(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        limit = self.get_argument("limit", None)
        self.reply(self.context["runs"].rows(int(limit) if limit else None))

    @tornado.web.authenticated
    def post(self) -> None:
        body = self.body()
        try:
            args = run_arguments(self.project, body)
        except NbmillError as exc:
            return self.refuse(403 if isinstance(exc, lab.OutsideProject) else 400, str(exc))
        job = self.context["jobs"].start(args)
        self.reply(job.state(), 202)


class Job(Handler):
    @tornado.web.authenticated
    def get(self, job_id: str) -> None:
        job = self.context["jobs"].get(job_id)
        if job is None:
            return self.refuse(404, f"no job {job_id}")
        self.reply(job.state())

    @tornado.web.authenticated
    def delete(self, job_id: str) -> None:
        job = self.context["jobs"].get(job_id)
        if job is None:
            return self.refuse(404, f"no job {job_id}")
        job.cancel()
        self.reply(job.state(), 202)


class Notebook(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        path = self.get_argument("path")
        try:
            self.reply({"path": path, "uses": lab.uses(self.project, path)})
        except lab.OutsideProject as exc:
            self.refuse(403, str(exc))


def run_arguments(project: Path, body: dict[str, Any]) -> list[str]:
    """``nbmill run``'s arguments from a request, every path checked to be in the project."""
    pipeline = body.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline:
        raise NbmillError("'pipeline' is required: a pipeline file, e.g. pipelines/training.yml")
    lab.inside(project, pipeline)
    args = [pipeline]
    if body.get("params"):
        lab.inside(project, str(body["params"]))
        args += ["--params", str(body["params"])]
    for item in body.get("overrides") or []:
        args += ["-p", str(item)]
    if body.get("reason"):
        args += ["--reason", str(body["reason"])]
    for step in body.get("force") or []:
        args += ["--force", str(step)]
    for step in body.get("only") or []:
        args += ["--only", str(step)]
    if body.get("force_all"):
        args.append("--force-all")
    return args


def setup(serverapp) -> None:
    """Register the handlers for the project the server's root folder is (or is inside)."""
    from nbmill.project.config import load_config
    from nbmill.project.spec import find_project_dir

    project = find_project_dir(Path(serverapp.root_dir)).resolve()
    config = load_config(project)
    root = Path(serverapp.root_dir).resolve()
    runs_dir = Path(config.runs_dir).resolve()
    context = {
        "project": project,
        "runs_dir": runs_dir,
        # where Jupyter's /files/ serves the runs from (None: outside the server's root)
        "runs_path": runs_dir.relative_to(root).as_posix() if root in runs_dir.parents else None,
        "jobs": Jobs(project, config.runs_dir),
        "runs": lab.Runs(config.runs_dir, list(config.key_metrics or []) or None),
    }
    base = url_path_join(serverapp.web_app.settings["base_url"], PREFIX)
    routes = [
        ("pipelines", Pipelines),
        ("runs", Runs),
        (r"runs/([\w.-]+)", Run),
        ("diff", Diff),
        (r"jobs/([\w-]+)", Job),
        ("notebook", Notebook),
    ]
    # Runs started here end with the server (SIGTERM to each, so each is recorded
    # `interrupted`), not orphaned: Jupyter Server has no stop hook for a module extension,
    # and runs atexit handlers when it stops.
    atexit.register(context["jobs"].stop_all)
    # Read every run.json once now, in the background, so the first full list is answered
    # from memory too.
    threading.Thread(target=context["runs"].rows, name="nbmill-runs", daemon=True).start()
    serverapp.web_app.add_handlers(
        ".*$",
        [(url_path_join(base, path), handler, {"context": context}) for path, handler in routes],
    )
    serverapp.log.info(f"nbmill: the API for {project} is at {base}/")
