"""One exception hierarchy: the CLI turns any NbmillError into a message and exit code 1."""


class NbmillError(Exception):
    """A problem the user can fix; the message says where and what to do."""


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
        self.exit_code = 128 + signum
