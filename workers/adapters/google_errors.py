"""One mapping from the Google clients' errors (Cloud Storage, Pub/Sub, BigQuery, auth) to the
pipeline's, used by every Google adapter and by the operations commands.

- 404: ``missing`` (an error, or a function from the message to one, or None to let the call
  return normally);
- 412 (a generation precondition not met): PreconditionFailed;
- 403: ConfigError, a grant is missing. Not bad input: a push handler answers 5xx, so the
  delivery succeeds once the grant is fixed, and a bulk command stops at the first one;
- 400, 414, 431 (a request refused as malformed): ``malformed(message)``, by default a
  PermanentError ``invalid_source`` (asking again cannot help);
- 429, 5xx, timeouts, connection resets and any other API error: TransientError;
- no credentials: ConfigError.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from workers.core.errors import ConfigError, PermanentError, PipelineError, PreconditionFailed, TransientError

MALFORMED_CODES = (400, 414, 431)
_DENIED = (gexc.Forbidden, gexc.PermissionDenied)
_PASSING = (gexc.GoogleAPICallError, gexc.RetryError, ConnectionError, TimeoutError)


def invalid_source(message: str) -> PipelineError:
    return PermanentError(message, code="invalid_source")


@contextlib.contextmanager
def google_errors(action: str, *, missing: PipelineError | Callable[[str], PipelineError] | None, needs: str = "",
                  malformed: Callable[[str], PipelineError] = invalid_source) -> Iterator[None]:
    """Run a Google client call; ``action`` says what it did ("publish to projects/p/topics/jobs"),
    ``needs`` which role a 403 lacks."""
    try:
        yield
    except gexc.NotFound as e:
        if callable(missing):
            raise missing(f"not found: {_said(e)}") from e
        if missing is not None:
            raise missing from e
    except gexc.PreconditionFailed as e:
        raise PreconditionFailed(f"{action}: the generation does not match the precondition") from e
    except _DENIED as e:
        hint = f" (needs {needs})" if needs else ""
        raise ConfigError(f"no permission to {action}{hint}: {_said(e)}") from e
    except auth_exc.DefaultCredentialsError as e:
        raise ConfigError(f"no Google credentials to {action}: {e}") from e
    except _PASSING as e:
        if isinstance(e, gexc.GoogleAPICallError) and e.code in MALFORMED_CODES:
            raise malformed(f"Google refused to {action[:300]} as malformed: {_said(e)}") from e
        raise TransientError(f"{action} failed: {_said(e)}") from e


def _said(e: Exception) -> str:
    return getattr(e, "message", None) or str(e)
