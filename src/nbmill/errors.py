"""One exception hierarchy, and the exit codes the command line ends with (the README's table).

| code | meaning |
|---|---|
| 0 | ok |
| 1 | error: an ``NbmillError`` (what to fix is in its message, on stderr), a failed run |
| 2 | usage: the command line itself is wrong (argparse, on stderr) |
| 3 | drift: ``nbmill run --fail-on-drift`` and a step detected drift |
| 4 | different: a check found a difference or a broken hash (``verify``, ``lineage`` with a |
|   | BROKEN link, ``reproduce`` whose metrics differ) |
| 128 + signal | interrupted: 130 for SIGINT (Ctrl-C), 143 for SIGTERM |
"""

import signal

OK = 0
ERROR = 1
USAGE = 2
DRIFT = 3
DIFFERENT = 4


def interrupted(signum: int) -> int:
    """The exit code of a command stopped by ``signum``, as a shell reports it: 128 + signum."""
    return 128 + signum


INTERRUPTED_BY_SIGINT = interrupted(signal.SIGINT)  # 130
INTERRUPTED_BY_SIGTERM = interrupted(signal.SIGTERM)  # 143


class NbmillError(Exception):
    """A problem the user can fix; the message says where and what to do."""

    exit_code = ERROR


class SpecError(NbmillError):
    """A pipeline file is malformed or inconsistent."""


class ParamsError(NbmillError):
    """A parameter is unknown, of the wrong type, or its file is malformed."""


class NotebookError(NbmillError):
    """A notebook cannot be read or has no usable parameters cell."""


class RunError(NbmillError):
    """A run failed; the record has been archived with the failure."""

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir


class RunInterrupted(RunError):
    """A run stopped on SIGINT or SIGTERM; the record says ``interrupted``."""

    def __init__(self, message: str, signum: int, run_dir=None):
        super().__init__(message, run_dir)
        self.exit_code = interrupted(signum)
