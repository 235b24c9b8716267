"""``nbmill archive push|pull|list|verify``: sealed records and the shared ledger in the
team's archive (``--archive URL``, else ``NBMILL_ARCHIVE``, else nbmill.yml's ``archive:``)."""

from __future__ import annotations

import argparse
import sys

from nbmill.cli._shared import ARCHIVE, RUNS_DIR, Commands, Group, arg, config, note, output
from nbmill.errors import DIFFERENT, ERROR, OK, NbmillError

COMMANDS = Commands()
VERBS = Commands()
MANY = 20  # records pushed at once past which the archive's objects are listed up front


def _archive(args: argparse.Namespace):
    from nbmill.archive import open_archive

    settings = config(args)
    if not settings.archive:
        raise NbmillError(
            "no archive: give --archive URL, set NBMILL_ARCHIVE, or add archive: to nbmill.yml"
        )
    return settings, open_archive(settings.archive, settings.project_dir)


@VERBS.command(
    "push",
    "push sealed records and waiting events to the archive (idempotent, resumable)",
    "Push each sealed record (default: every run in the runs folder) to the archive: a file "
    "already there is not sent again and the manifest goes last, so a push that was cut is "
    "completed. Then append to the archive's ledger, in order, the events still spooled for it "
    "and any event of the local ledger it lacks (history from before the archive). "
    f"Exit {ERROR} when something is still waiting.",
    arg("runs", nargs="*", metavar="RUN", help="run ids (default: every sealed run)"),
    ARCHIVE,
    RUNS_DIR,
)
def cmd_push(args: argparse.Namespace) -> int:
    from nbmill.archive.records import push, stored_objects
    from nbmill.governance.events import retry_spooled
    from nbmill.project.config import ARCHIVE_SINK
    from nbmill.records.review import run_state
    from nbmill.records.runjson import read, run_dirs

    settings, archive = _archive(args)
    folders = (
        [settings.runs_dir / r for r in args.runs] if args.runs else run_dirs(settings.runs_dir)
    )
    pushed, waiting = [], []
    # Many records: list the objects once rather than ask about each file of each record.
    known = stored_objects(archive) if len(folders) > MANY else None
    for folder in folders:
        if not (folder / "run.json").is_file():
            raise NbmillError(f"{folder}: not a run record (no run.json)")
        state = run_state(read(folder))
        if state in ("running", "abandoned"):
            waiting.append(f"run {folder.name}: {state}, not sealed; not pushed")
            continue
        pushed.append(push(archive, folder, known=known).as_dict())
    delivered, problems = retry_spooled(settings, only=ARCHIVE_SINK)
    waiting += problems
    if not problems:
        from nbmill.archive.sink import backfill
        from nbmill.governance.ledger import Ledger

        delivered += backfill(archive, Ledger(settings.ledger).events(), sys.stdout)
    for line in waiting:
        note(f"kept: {line}")
    result = {"archive": archive.url, "pushed": pushed, "events_appended": delivered,
              "waiting": waiting}  # fmt: skip

    def text() -> str:
        lines = [f"{p['run']}: {p['sent']} files sent, {p['already_there']} already there"
                 for p in pushed]  # fmt: skip
        return "\n".join([*lines, f"{delivered} event(s) appended to the archive's ledger"])

    return output(args, result, text, ERROR if waiting else OK)


@VERBS.command(
    "pull",
    "copy records from the archive into its local mirror",
    "Fetch records (default: all) and the ledger into the mirror under .nbmill/archive/, each "
    "file checked against its sha256; what is already there is not fetched again.",
    arg("runs", nargs="*", metavar="RUN", help="run ids (default: every record)"),
    ARCHIVE,
)
def cmd_pull(args: argparse.Namespace) -> int:
    from nbmill.archive.mirror import Mirror

    settings, archive = _archive(args)
    mirror = Mirror.of(archive, settings.project_dir)
    ids = mirror.index()
    problems = mirror.pull(args.runs or ids)
    mirror.pull_ledger()
    for problem in problems:
        note(f"error: {problem}")
    result = {"archive": archive.url, "mirror": str(mirror.runs_dir), "records": len(ids),
              "problems": problems}  # fmt: skip
    text = f"{len(args.runs or ids)} record(s) and the ledger in {mirror.runs_dir}"
    return output(args, result, lambda: text, DIFFERENT if problems else OK)


@VERBS.command(
    "list",
    "the complete records in the archive",
    "The ids of the records whose push completed (those with a manifest), oldest first.",
    ARCHIVE,
)
def cmd_list(args: argparse.Namespace) -> int:
    from nbmill.archive.records import complete

    _, archive = _archive(args)
    ids = list(complete(archive))
    return output(args, ids, lambda: "\n".join(ids) or "no records")


@VERBS.command(
    "verify",
    "check every record, the ledger's chain and its anchors, from the archive's own bytes",
    "Re-hash every record's files against its manifest, check each run.json against its run's "
    "final event in the archive's ledger, walk the chain, and check the chain against its "
    f"anchors (MLflow tags, and --anchor). Exit {DIFFERENT} naming every missing or altered "
    "record, file or entry.",
    arg("--anchor", action="append", default=[], metavar="SEQ:HASH",
        help="an anchor kept elsewhere, e.g. a build tag nbmill-ledger-SEQ-HASH (repeatable)"),
    ARCHIVE,
)  # fmt: skip
def cmd_verify(args: argparse.Namespace) -> int:
    return verified(args, config(args))


def verified(args: argparse.Namespace, settings) -> int:
    """``archive verify``'s result (``nbmill verify`` with an archive prints the same)."""
    from nbmill.archive import open_archive
    from nbmill.archive.anchors import Anchor
    from nbmill.archive.check import verify_archive

    try:
        given = [Anchor.parse(text, "--anchor") for text in getattr(args, "anchor", [])]
    except ValueError as exc:
        raise NbmillError(str(exc)) from None
    checked = verify_archive(open_archive(settings.archive, settings.project_dir), given)
    return output(
        args, checked.as_dict(), lambda: "\n".join(checked.lines()), OK if checked.ok else DIFFERENT
    )


COMMANDS += [
    Group(
        "archive",
        "the team's archive of run records and events: push, pull, list, verify",
        "Where sealed records and every event are kept for the team: a folder, or Azure Blob "
        "Storage (az://CONTAINER/PREFIX; the account from AZURE_STORAGE_CONNECTION_STRING, or "
        "AZURE_STORAGE_ACCOUNT_URL with DefaultAzureCredential).",
        VERBS,
    ),
]
