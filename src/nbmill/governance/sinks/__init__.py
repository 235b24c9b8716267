"""Notification sinks, one module per kind: webhook (generic, Teams, Slack) and Azure DevOps."""


class DeliveryError(Exception):
    """An event could not be delivered this time (the message never contains the URL)."""
