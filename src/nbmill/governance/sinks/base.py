"""What every notification sink is: the events it accepts, how it sends one, and whether it is
sent in the background (spooled, retried) or written at once.

``Sink`` is an abstract base class rather than a Protocol: a kind is registered on purpose
(``nbmill.governance.sinks.register``), and every kind shares the same behaviour for its
configuration (its name, the ``events:`` patterns it asks for, a ``close`` with nothing to
release), which a Protocol would make each kind repeat; a kind that lacks ``send`` fails when
it is built, not when the first event arrives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TextIO

from nbmill.project.config import SinkConfig
from nbmill.project.secret import EnvRef


class DeliveryError(Exception):
    """An event could not be delivered this time; worth retrying, or reporting. The message
    never contains the sink's URL or key."""


class Sink(ABC):
    """One configured sink of one kind (a ``notify:`` entry of nbmill.yml).

    Args:
        config: the sink's entry: its name, type, URL, the events it asks for, retries.
        stdout: the stream a kind that writes to the console writes to (the Notifier's).
    """

    #: True: the Notifier spools each event for this sink and sends it from a background
    #: thread, retrying with backoff (``config.retries``); what is not delivered stays spooled
    #: for ``nbmill events retry``. False: it is written at once, in the caller's thread, with
    #: nothing to spool (Azure DevOps' logging commands on stdout).
    background: ClassVar[bool] = True

    def __init__(self, config: SinkConfig, stdout: TextIO):
        self.config = config
        self.stdout = stdout

    @property
    def name(self) -> str:
        """The sink's name in nbmill.yml; its spool folder is named after it."""
        return self.config.name

    @property
    def url_name(self) -> str:
        """How an error names the sink's URL: its environment variable, never its value."""
        url = self.config.url
        return url.name if isinstance(url, EnvRef) else "url"

    def url(self) -> str:
        """The sink's URL, read from the environment now if it is ``${env:NAME}``; a
        DeliveryError naming the variable if it is not set."""
        url = self.config.url
        value = url.value() if isinstance(url, EnvRef) else url
        if not value:
            raise DeliveryError(f"{self.url_name} is not set")
        return value

    @classmethod
    def implicit(cls) -> SinkConfig | None:
        """The sink this kind switches on by itself where none of its type is configured
        (Azure DevOps inside Azure Pipelines), or None: most kinds need configuring."""
        return None

    def accepts(self, event: dict[str, Any]) -> bool:
        """Whether this sink takes the event: by default, the types its ``events:`` ask for.

        Args:
            event: a CloudEvent (``governance.events.new_event``).
        Returns:
            True to send it (and, for a background sink, to spool it first).
        """
        return self.config.wants(event["type"])

    @abstractmethod
    def send(self, event: dict[str, Any]) -> None:
        """Send one event once; the Notifier does the spooling and the retries.

        Args:
            event: a CloudEvent that ``accepts`` took.
        Raises:
            DeliveryError: the sink did not take it (down, refusing, misconfigured), naming
                what went wrong but never the URL or key.
        """

    def close(self) -> None:  # noqa: B027 (a default that does nothing, not an abstract method)
        """Release what the sink holds (connections, files); it sends nothing afterwards."""
