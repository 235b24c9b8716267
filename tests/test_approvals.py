"""Who approved a production deployment: read from Azure DevOps' REST API (a real HTTP server on
127.0.0.1 answering as Azure DevOps does), and kept with the alias move in the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbmill.errors import NbmillError
from nbmill.governance import approvals

BUILD = "4242"
TIMELINE = {
    "records": [
        {"id": "s-staging", "type": "Stage", "identifier": "DeployStaging", "parentId": None},
        {"id": "s-prod", "type": "Stage", "identifier": "DeployProd", "parentId": None},
        {"id": "c-staging", "type": "Checkpoint", "parentId": "s-staging"},
        {"id": "c-prod", "type": "Checkpoint", "parentId": "s-prod"},
        {"id": "a-staging", "type": "Checkpoint.Approval", "parentId": "c-staging"},
        {"id": "a-prod", "type": "Checkpoint.Approval", "parentId": "c-prod"},
        {"id": "j-prod", "type": "Job", "parentId": "s-prod"},
    ]
}
APPROVALS = {
    "a-staging": {"id": "a-staging", "status": "approved", "steps": [
        {"status": "approved", "comment": "", "lastModifiedOn": "2026-12-03T10:00:00Z",
         "actualApprover": {"displayName": "Bo Chen", "uniqueName": "bo@example.com"}},
    ]},
    "a-prod": {"id": "a-prod", "status": "approved", "steps": [
        {"status": "approved", "comment": "release 7", "lastModifiedOn": "2026-12-03T11:00:00Z",
         "actualApprover": {"displayName": "Ann Lee", "uniqueName": "ann@example.com"}},
        {"status": "pending", "assignedApprover": {"displayName": "Cy Dow"}},
    ]},
}  # fmt: skip


class AzureDevOps:
    """Answers the two GETs the module makes, for the project "ml" of the collection; records
    the requests and refuses any without the job's token."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Authorization", "")))
                path = self.path.split("?")[0]
                body, status = None, 404
                if self.headers.get("Authorization") != "Bearer job-token":
                    status = 401
                elif path == f"/org/ml/_apis/build/builds/{BUILD}/timeline":
                    body, status = TIMELINE, 200
                elif path.startswith("/org/ml/_apis/pipelines/approvals/"):
                    found = APPROVALS.get(path.rsplit("/", 1)[1])
                    body, status = found, (200 if found else 404)
                payload = json.dumps(body or {"message": "not found"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.collection = f"http://127.0.0.1:{self.server.server_address[1]}/org/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def devops():
    server = AzureDevOps()
    yield server
    server.close()


def test_the_approvers_of_the_stage_are_read_with_their_comments(devops):
    found = approvals.approvers(devops.collection, "ml", BUILD, "job-token", "DeployProd")
    assert found == ["Ann Lee <ann@example.com>: release 7"]  # not staging's, not the pending
    assert all(auth == "Bearer job-token" for _, auth in devops.requests)
    assert any("$expand=steps" in path for path, _ in devops.requests)


def test_without_a_stage_every_approval_of_the_build_is_read_in_order(devops):
    found = approvals.approvers(devops.collection, "ml", BUILD, "job-token")
    assert found == ["Bo Chen <bo@example.com>", "Ann Lee <ann@example.com>: release 7"]


def test_a_refused_token_is_an_error_naming_the_call(devops):
    with pytest.raises(NbmillError, match="timeline: HTTP Error 401"):
        approvals.approvers(devops.collection, "ml", BUILD, "wrong", "DeployProd")


def test_the_step_prints_the_approvers_and_fails_without_them(devops):
    env = {
        "SYSTEM_COLLECTIONURI": devops.collection, "SYSTEM_TEAMPROJECT": "ml",
        "BUILD_BUILDID": BUILD, "SYSTEM_ACCESSTOKEN": "job-token", "SYSTEM_STAGENAME": "DeployProd",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "nbmill.governance.approvals"],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Ann Lee <ann@example.com>: release 7"
    assert approvals.main({**env, "SYSTEM_STAGENAME": "DeployNowhere"}) == 1
    assert approvals.main({k: v for k, v in env.items() if k != "SYSTEM_ACCESSTOKEN"}) == 1
