"""Errors the rules raise: only for input that is not a HubSpot event or contact at all.

A business "no" (a score below the threshold, a stale bounce, an unknown milestone) is a
`Decision` with a reason, never an exception.
"""

from __future__ import annotations


class TriggerError(ValueError):
    """A webhook event, email event or contact could not be parsed; the message is one line."""
