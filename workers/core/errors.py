"""One exception root for the pipeline.

``PermanentError`` means the input can never succeed (bad audio): the caller records a
failed result and acknowledges. ``TransientError`` means try again later: the web layer
answers 5xx so Pub/Sub redelivers, and after its attempts the dead-letter topic keeps it.
Each error carries a short machine-readable ``code`` that lands in failed results.
"""

from __future__ import annotations


class PipelineError(Exception):
    code = "pipeline_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class PermanentError(PipelineError):
    """The input is bad; retrying cannot help."""

    code = "permanent"


class InvalidMessage(PermanentError):
    """A message that can never be processed: a malformed envelope, or a job that cannot be
    named (no bucket or object, a name GCS cannot hold) or whose id is not the one of what it
    names. Acknowledged with a log line and nothing written: a redelivery cannot fix it."""

    code = "invalid_message"


class TransientError(PipelineError):
    """A dependency failed for now; the same request may succeed later."""

    code = "transient"


class Overloaded(TransientError):
    """A service has no room for one more job now (its slots and its queue are full): answered
    429, so Pub/Sub (or a caller) delivers it again later; nothing is lost or written."""

    code = "overloaded"


class BadRequestError(PipelineError):
    """The request itself is malformed (bad envelope, bad token, unknown route): 4xx, no retry."""

    code = "bad_request"


class ConfigError(PipelineError):
    """A setting is missing or invalid; raised at start-up, never while handling a job."""

    code = "config"


class PreconditionFailed(PipelineError):
    """A write lost an if-generation-match race: somebody else wrote first."""

    code = "precondition_failed"


class NotFound(PipelineError):
    """A blob does not exist (or not at the requested generation)."""

    code = "not_found"


# The code of a failure to read a job's object at its generation (replaced, deleted, never there):
# such a result outranks no other (Joiner, `status`).
SOURCE_GONE = "source_gone"
