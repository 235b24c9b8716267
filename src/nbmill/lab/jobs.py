"""Runs started from JupyterLab: each one the real ``nbmill run`` in a child process, so a run
started in Lab is the same as one started in a terminal (its record, its events, its exit), and
cancelling it is SIGTERM, which the runner records as ``interrupted``. A job finds its run
folder by the runner's pid, which run.json records."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmill.records.runjson import RUN_JSON, run_dirs

_ids = itertools.count(1)


@dataclass
class Job:
    id: str
    argv: list[str]
    runs_dir: Path
    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.time)
    run_dir: Path | None = None
    cancelled: bool = False

    def find_run(self) -> Path | None:
        """The run folder this job's runner writes (run.json names its pid)."""
        if self.run_dir is None:
            for folder in run_dirs(self.runs_dir):
                try:
                    data = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # being written
                if (data.get("runner") or {}).get("pid") == self.process.pid:
                    self.run_dir = folder
                    break
                if folder.stat().st_mtime < self.started - 1:
                    break  # newest first: older folders are not this job's
        return self.run_dir

    def state(self) -> dict[str, Any]:
        code = self.process.poll()
        run_dir = self.find_run()
        run = None
        if run_dir is not None:
            try:
                run = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                run = None
        return {
            "id": self.id,
            "argv": self.argv,
            "state": "running" if code is None else ("done" if code == 0 else "failed"),
            "exit_code": code,
            "cancelled": self.cancelled,
            "run": run,
            "run_dir": str(run_dir) if run_dir else None,
            "log": self.tail(),
        }

    def tail(self, limit: int = 4000) -> str:
        data = self.log.read_bytes() if self.log.exists() else b""
        return data[-limit:].decode("utf-8", "replace")

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.cancelled = True
            self.process.send_signal(signal.SIGTERM)


class Jobs:
    """The runs this server started, by id."""

    def __init__(self, project: Path, runs_dir: Path):
        self.project, self.runs_dir = project, runs_dir
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, args: list[str]) -> Job:
        job_id = f"job-{next(_ids)}"
        log = Path(tempfile.mkstemp(prefix=f"nbmill-lab-{job_id}-", suffix=".log")[1])
        argv = ["nbmill", "run", *args]
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "nbmill", "run", *args],
                cwd=self.project,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        job = Job(job_id, argv, self.runs_dir, process, log)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def stop_all(self, wait_s: float = 15.0) -> None:
        """Cancel every run still going (each ends ``interrupted``, as by Cancel) and wait up
        to ``wait_s`` for them: the server is stopping, and no run outlives it unrecorded."""
        going = [job for job in self.all() if job.process.poll() is None]
        for job in going:
            job.cancel()
        deadline = time.monotonic() + wait_s
        for job in going:
            try:
                job.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
