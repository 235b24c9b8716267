"""nbmill inside JupyterLab: a Jupyter Server extension whose REST API (``handlers``) runs the
project's pipelines, follows a run as it goes, lists runs, and says which pipelines use the
notebook being edited. It calls the same library functions as the command line, is
authenticated by Jupyter Server's own token or password, and never reads or runs anything
outside the project folder. Enabled by ``jupyter-config/`` (installed with the package) or
``--ServerApp.jpserver_extensions='{"nbmill.lab": true}'``."""

from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbmill.lab"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from nbmill.lab.handlers import setup

    setup(serverapp)
