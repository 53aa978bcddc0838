"""Every error this project raises, in one tree.

    LifecycleError
    ├── ConfigError              config.yaml or the environment is wrong (exit 2)
    ├── PayloadError             a webhook body or event is malformed (400)
    ├── SignatureError           a webhook signature or timestamp is wrong (401)
    ├── RedisUnavailableError    Redis did not answer: nothing was stored (503)
    ├── ReplayError              a failed job cannot be replayed
    ├── ReconcileError           a reconcile run could not start or had to stop
    │   └── ReconcileLockedError     another reconcile is running
    └── HubSpotError(status)     a HubSpot API call failed
        ├── HubSpotTransientError    429, 5xx, 423, timeouts, connection errors: retry
        └── HubSpotPermanentError    everything else: fail the job
            └── HubSpotNotFoundError 404: the object is gone

A business "no" is a rules Decision, never an exception.
"""

from __future__ import annotations


class LifecycleError(Exception):
    """Base of every error raised by this project."""


class ConfigError(LifecycleError):
    """config.yaml or the environment is invalid; the message names the file and key."""


class PayloadError(LifecycleError):
    """A webhook body or event could not be parsed or failed validation."""


class SignatureError(LifecycleError):
    """A webhook request's signature or timestamp is invalid."""


class RedisUnavailableError(LifecycleError):
    """Redis did not answer (or refused the write): nothing was stored; the caller answers 503."""


class ReplayError(LifecycleError):
    """A failed job could not be replayed."""


class ReconcileError(LifecycleError):
    """A reconcile run could not start or had to stop (the cursor is kept)."""


class ReconcileLockedError(ReconcileError):
    """Another reconcile holds `lc:reconcile:lock`."""


class HubSpotError(LifecycleError):
    """A HubSpot API call failed. `status` is the HTTP status (0 for no answer)."""

    def __init__(self, message: str, *, status: int = 0, retry_after_s: float | None = None,
                 body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.body = body


class HubSpotTransientError(HubSpotError):
    """Worth retrying: rate limited, locked, server error, timeout or no connection."""


class HubSpotPermanentError(HubSpotError):
    """Not worth retrying as is: the request or the token is wrong."""


class HubSpotNotFoundError(HubSpotPermanentError):
    """The object does not exist (deleted or merged away)."""
