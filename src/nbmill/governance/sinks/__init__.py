"""Notification sinks, one module per kind: webhook (generic, Teams, Slack), Azure DevOps and
OpenLineage (a lineage server such as Marquez)."""


class DeliveryError(Exception):
    """An event could not be delivered this time (the message never contains the URL)."""
