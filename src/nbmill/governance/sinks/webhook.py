"""POST an event to a webhook: the CloudEvent itself, or a Teams or Slack message built from it.

The URL comes from the environment (``${env:NAME}``) at send time and never appears in an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from nbmill.governance.sinks.base import DeliveryError, Sink


def summary(event: dict[str, Any]) -> str:
    """One line: the event, what failed (the runner's error, or a text), who, and why."""
    data = event.get("data", {})
    who = data.get("who")
    parts = [f"{event['type']}: {event.get('subject', '')}"]
    error = data.get("error")
    if isinstance(error, dict):
        parts.append(f"failed at {error.get('step')}: {error.get('type')}: {error.get('message')}")
    elif error:
        parts.append(f"failed: {error}")
    if who:
        parts.append(f"by {who}")
    if data.get("why"):
        parts.append(f"because {data['why']}")
    return " — ".join(parts)


def facts(event: dict[str, Any]) -> list[tuple[str, str]]:
    data = event.get("data", {})
    keys = ("run_id", "status", "who", "why", "model", "version", "alias", "step")
    rows = [(key, str(data[key])) for key in keys if data.get(key) not in (None, "")]
    for name, value in list((data.get("metrics") or {}).items())[:6]:
        rows.append((name, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows + [("time", event["time"])]


def payload(fmt: str, event: dict[str, Any]) -> tuple[bytes, str]:
    """The request body and content type for a format."""
    if fmt == "teams":  # an Adaptive Card, as Teams workflow webhooks accept
        card = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "size": "Medium",
                    "weight": "Bolder",
                    "wrap": True,
                    "text": summary(event),
                },
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(event)]},
            ],
        }
        body = {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
        return json.dumps(body).encode(), "application/json"
    if fmt == "slack":
        lines = "\n".join(f"*{k}*: {v}" for k, v in facts(event))
        body = {
            "text": summary(event),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": summary(event)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines}},
            ],
        }
        return json.dumps(body).encode(), "application/json"
    return json.dumps(event).encode(), "application/cloudevents+json; charset=utf-8"


class Webhook(Sink):
    """POSTs each event it accepts, in the sink's ``format``; spooled and retried."""

    def send(self, event: dict[str, Any]) -> None:
        """POST once; DeliveryError on anything but 2xx, naming neither the URL nor its token."""
        sink, url = self.config, self.url()
        not_http = DeliveryError(
            f"webhook '{sink.name}': {self.url_name} is not an http(s) URL; set it to the "
            "webhook's address, such as https://example.webhook.office.com/..."
        )
        if not _is_http(url):
            raise not_http
        body, content_type = payload(sink.format, event)
        headers = {
            "Content-Type": content_type,
            "User-Agent": "nbmill",
            "ce-id": event["id"],
            "ce-type": event["type"],
        }
        try:
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            with urllib.request.urlopen(request, timeout=sink.timeout_s):
                return
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            text = _without_url(str(reason), url)
            raise DeliveryError(f"{type(reason).__name__}: {text}") from None
        except ValueError:  # http.client.InvalidURL: a space or control character in it
            raise not_http from None


def _is_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises ValueError)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _without_url(text: str, url: str) -> str:
    return text.replace(url, "<url>")
