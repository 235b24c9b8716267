"""``nbmill traffic``: demo traffic for a running endpoint, so monitoring has a window to judge."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nbmill.cli._shared import Commands, arg, note, output, project, repeated
from nbmill.errors import ERROR, OK

COMMANDS = Commands()


@COMMANDS.command(
    "traffic",
    "send held-out rows (optionally shifted) to a running endpoint",
    "Send realistic scoring requests to `nbmill serve`: rows sampled from the held-out data of "
    "the run that trained NAME@ALIAS (its `test_data` output), each feature shifted by "
    "--shift FEATURE=AMOUNT, so that drift shows in the monitoring that follows. The key is "
    "NBMILL_SERVE_KEY, else .nbmill/serve.key, as `nbmill serve` uses.",
    arg("model", help="NAME@ALIAS or NAME/VERSION: whose held-out data and features to send"),
    arg("--rows", type=int, help="rows to send (default: every held-out row once)"),
    repeated("--shift", metavar="FEATURE=AMOUNT", help="add AMOUNT to FEATURE (repeatable)"),
    arg("--url", default="http://127.0.0.1:5001", help="the endpoint (http://127.0.0.1:5001)"),
    arg("--data", metavar="FILE", help="a CSV of rows to sample instead of the held-out data"),
    arg("--batch", type=int, default=1, help="rows per request (1)"),
    arg("--seed", type=int, default=0, help="seed of the sampling (0)"),
)
def cmd_traffic(args: argparse.Namespace) -> int:
    import pandas as pd

    from nbmill.errors import NbmillError
    from nbmill.models.registry import resolve_registered
    from nbmill.monitor import traffic
    from nbmill.project.config import load_config
    from nbmill.serving.request import Signature, read_mlmodel
    from nbmill.serving.startup import ENV_KEY, load_key

    here = project()
    if args.batch < 1:
        raise NbmillError(f"--batch {args.batch}: give 1 or more")
    with resolve_registered(args.model, here) as (folder, _, identity):
        columns = list(Signature.from_mlmodel(read_mlmodel(folder), folder).columns)
    if args.data:
        source = Path(args.data)
    else:
        if not identity.get("run_id"):
            raise NbmillError(f"{args.model}: no nbmill run is tagged on it; pass --data FILE")
        source = traffic.held_out(load_config(here).runs_dir / identity["run_id"], here)
    if not source.is_file():
        raise NbmillError(f"{source}: no such file")
    shifts = traffic.parse_shifts(args.shift, columns)
    frame = pd.read_csv(source)
    rows = len(frame) if args.rows is None else args.rows
    if rows > len(frame):
        note(
            f"note: {rows} rows from {len(frame)}: rows repeat, and tests on a small window "
            "count each repeat as new evidence"
        )
    matrix = traffic.sample(frame, columns, rows, shifts, args.seed)
    key = os.environ.get(ENV_KEY) or load_key(here)[0]
    traffic.wait_ready(args.url)
    sent = traffic.send(args.url, key, columns, matrix, batch=args.batch)
    sent.update(model=args.model, data=str(source), shifts=shifts)

    def text() -> str:
        shifted = ", ".join(f"{k} {v:+g}" for k, v in shifts.items()) or "none"
        statuses = ", ".join(f"{k}: {v}" for k, v in sent["statuses"].items())
        return (
            f"sent {sent['rows']} rows in {sent['requests']} requests to {args.url} "
            f"in {sent['seconds']}s (statuses {statuses}; shifts: {shifted})\n"
            f"sampled from {source}"
        )

    ok = all(200 <= int(status) < 300 for status in sent["statuses"])
    return output(args, sent, text, OK if ok else ERROR)
