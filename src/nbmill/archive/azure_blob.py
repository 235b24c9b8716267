"""An archive in Azure Blob Storage: ``az://CONTAINER/PREFIX``. The account comes from the
environment, never from a file: ``AZURE_STORAGE_CONNECTION_STRING``, else
``AZURE_STORAGE_ACCOUNT_URL`` with ``DefaultAzureCredential`` (a pipeline's service connection,
a developer's ``az login``, a managed identity). Objects are block blobs, each committed whole by
the service; the ledger is an append blob, each append conditional on the length the writer read
(``appendpos_condition``)."""

from __future__ import annotations

import os
from pathlib import Path

from nbmill.archive.base import Archive, ArchiveError, Conflict

CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"
SETTING = f"{CONNECTION_STRING}, or {ACCOUNT_URL} with DefaultAzureCredential"
# Two quick retries, not the client's default (15 s, 18 s, 24 s, each +-3 s): a run that cannot
# reach the account spools its events and says so, rather than waiting a minute per request.
RETRY = {
    "initial_backoff": 0.3,
    "increment_base": 1.5,
    "retry_total": 2,
    "random_jitter_range": 0.2,
}
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 60}


def _service():
    from azure.storage.blob import BlobServiceClient, ExponentialRetry

    options = {"retry_policy": ExponentialRetry(**RETRY), **TIMEOUTS}
    if os.environ.get(CONNECTION_STRING):
        try:
            return BlobServiceClient.from_connection_string(
                os.environ[CONNECTION_STRING], **options
            )
        except ValueError as exc:
            raise ArchiveError(f"{CONNECTION_STRING} is not a connection string: {exc}") from None
    if os.environ.get(ACCOUNT_URL):
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(
            os.environ[ACCOUNT_URL], credential=DefaultAzureCredential(), **options
        )
    raise ArchiveError(f"archive az://: no storage account: set {SETTING} (sign in first)")


class AzureBlobArchive(Archive):
    def __init__(self, container: str, prefix: str = ""):
        self.container_name = container
        self.prefix = prefix.strip("/")
        self.url = f"az://{container}" + (f"/{self.prefix}" if self.prefix else "")
        self.container = _service().get_container_client(container)

    @classmethod
    def from_url(cls, url: str, project_dir: Path | None = None) -> AzureBlobArchive:
        container, _, prefix = url.removeprefix("az://").partition("/")
        if not container:
            raise ArchiveError(f"archive {url!r}: name a container (az://CONTAINER/PREFIX)")
        return cls(container, prefix)

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob(self, key: str):
        return self.container.get_blob_client(self._name(key))

    def _call(self, what: str, call, *missing: type[BaseException]):
        """Run one request; None when it raised one of ``missing`` (no such blob); the
        client's other errors become ArchiveErrors naming the setting to look at."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return call()
        except missing:
            return None
        except ClientAuthenticationError as exc:
            raise self._refused(what, _first_line(exc)) from None
        except HttpResponseError as exc:
            code = getattr(exc, "error_code", None) or ""
            if code == "ContainerNotFound":
                raise ArchiveError(
                    f"{self.url}: {what}: container '{self.container_name}' does not exist in "
                    f"the account ({SETTING}); create it: az storage container create --name "
                    f"{self.container_name}"
                ) from None
            if exc.status_code == 403 or code.startswith("Authentication"):
                raise self._refused(what, code or str(exc.status_code)) from None
            raise
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ArchiveError(
                f"{self.url}: {what}: cannot reach the storage account ({SETTING}): "
                f"{_first_line(exc)}"
            ) from None

    def _refused(self, what: str, why: str) -> ArchiveError:
        return ArchiveError(
            f"{self.url}: {what}: the storage account refused the credentials ({SETTING}): {why}"
        )

    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        from azure.core.exceptions import ResourceExistsError

        blob = self._blob(key)
        done = self._call(
            f"write {key}",
            lambda: blob.upload_blob(data, overwrite=overwrite),
            ResourceExistsError,
        )
        return done is not None

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        return bool(self._call(f"read {key}", blob.exists))

    def read(self, key: str, start: int = 0) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob(key)
        return self._call(
            f"read {key}",
            lambda: blob.download_blob(offset=start or None).readall(),
            ResourceNotFoundError,
        )

    def keys(self, prefix: str = "") -> dict[str, str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        start = self._name(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        listed = self._call(
            "list", lambda: list(self.container.list_blobs(name_starts_with=start or None))
        )
        return dict(sorted((b.name[cut:], str(b.etag)) for b in listed))

    def size(self, key: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob(key)
        properties = self._call(f"read {key}", blob.get_blob_properties, ResourceNotFoundError)
        return 0 if properties is None else properties.size

    def append(self, key: str, data: bytes, at: int) -> int:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        blob = self._blob(key)
        if at == 0:  # the first line: create the append blob unless another writer just did
            self._call(
                f"create {key}",
                lambda: blob.create_append_blob(match_condition=MatchConditions.IfMissing),
                ResourceExistsError,
            )
        try:
            result = self._call(
                f"append to {key}", lambda: blob.append_block(data, appendpos_condition=at)
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:  # AppendPositionConditionNotMet
                raise Conflict(f"{self.url}/{key}: another writer appended first") from None
            raise
        return int(result["blob_append_offset"]) + len(data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
