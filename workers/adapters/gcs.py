"""Google Cloud Storage adapter of the BlobStore port.

Same semantics as ``adapters.local``: ``write(if_generation_match=0)`` stores only if the
object is absent and raises PreconditionFailed on GCS's 412; ``download`` streams exactly
one generation to a file and raises NotFound when that generation is gone. Errors that may
pass (429, 5xx, timeouts, connection resets) become TransientError so the web layer answers
5xx and Pub/Sub redelivers; a missing bucket on write is transient too (a deployment fault
that a fix resolves, not bad input). A 403 becomes ConfigError: a missing grant. A request
GCS refuses as malformed (400, 414, 431: an invalid bucket name or generation, a name too long)
becomes a PermanentError (``invalid_source``): asking again cannot help.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from google.api_core import exceptions as gexc
from google.cloud import storage

from workers.errors import ConfigError, NotFound, PermanentError, PipelineError, PreconditionFailed, TransientError
from workers.ports import BlobInfo

log = logging.getLogger(__name__)

# 8 MiB chunks: a long recording streams to disk without being held in memory.
DOWNLOAD_CHUNK_BYTES = 8 * 1024 * 1024
_TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.RetryError,
    ConnectionError,
    TimeoutError,
)
_MALFORMED = (400, 414, 431)


def storage_client(project: str, emulator_host: str = "") -> storage.Client:
    """A client for the real service, or for an emulator (anonymous, no credentials needed)."""
    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "local-dev",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator_host},
        )
    return storage.Client(project=project or None)


class GcsBlobStore:
    def __init__(self, client: storage.Client) -> None:
        self._client = client

    @property
    def client(self) -> storage.Client:
        return self._client

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        with _mapped("stat", bucket, name, missing=None):
            blob = self._client.bucket(bucket).get_blob(name)
            return None if blob is None else _info(blob)
        return None  # the bucket is gone: so is the object

    def read(self, bucket: str, name: str) -> tuple[bytes, int]:
        blob = self._client.bucket(bucket).blob(name)
        with _mapped("read", bucket, name, missing=NotFound(f"gs://{bucket}/{name} does not exist")):
            data = blob.download_as_bytes()
        return data, int(blob.generation)

    def download(self, bucket: str, name: str, generation: int, dest: Path) -> None:
        blob = self._client.bucket(bucket).blob(name, generation=generation, chunk_size=DOWNLOAD_CHUNK_BYTES)
        try:
            with _mapped(f"download #{generation} of", bucket, name,
                         missing=NotFound(f"gs://{bucket}/{name} generation {generation} is gone")):
                blob.download_to_filename(str(dest))
        except PipelineError:
            Path(dest).unlink(missing_ok=True)
            raise

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None,
        content_type: str = "application/json",
    ) -> int:
        blob = self._client.bucket(bucket).blob(name)
        try:
            with _mapped("write (create or replace)", bucket, name,
                         missing=TransientError(f"bucket {bucket!r} does not exist (write of {name})")):
                # A conditional write is safe to retry, so the library's default retry applies.
                blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
        except gexc.PreconditionFailed as e:
            raise PreconditionFailed(
                f"gs://{bucket}/{name}: generation does not match {if_generation_match}"
            ) from e
        return int(blob.generation)

    def list(self, bucket: str, prefix: str = "") -> Iterator[BlobInfo]:
        with _mapped("list", bucket, prefix, missing=NotFound(f"bucket {bucket!r} does not exist")):
            for blob in self._client.list_blobs(bucket, prefix=prefix or None):
                yield _info(blob)

    def put(self, bucket: str, name: str, path: Path, content_type: str | None = None) -> int:
        """Upload a local file unconditionally, as a user's ``gcloud storage cp`` does."""
        blob = self._client.bucket(bucket).blob(name)
        with _mapped("upload", bucket, name, missing=TransientError(f"bucket {bucket!r} does not exist")):
            blob.upload_from_filename(str(path), content_type=content_type)
        return int(blob.generation)


@contextlib.contextmanager
def _mapped(action: str, bucket: str, name: str, *, missing: PipelineError | None) -> Iterator[None]:
    """The client's errors in the pipeline's terms: 404 becomes ``missing`` (swallowed when
    None), 403 a ConfigError, a malformed request a PermanentError, and what may pass (429,
    5xx, timeouts) a TransientError."""
    try:
        yield
    except gexc.NotFound as e:
        if missing is not None:
            raise missing from e
    except gexc.Forbidden as e:
        raise _denied(action, bucket, name, e) from e
    except _TRANSIENT as e:
        raise TransientError(f"{action} gs://{bucket}/{name}: {e}") from e
    except gexc.GoogleAPICallError as e:  # a 431 comes as the base class
        if e.code not in _MALFORMED:
            raise
        raise PermanentError(f"GCS refused to {action} gs://{bucket}/{name[:200]}: {e}", code="invalid_source") from e


def _denied(action: str, bucket: str, name: str, error: Exception) -> ConfigError:
    """A 403: a grant is missing. Not bad input; a push handler still answers 5xx, so the
    delivery succeeds once the grant is fixed, and a bulk command stops at the first one."""
    return ConfigError(f"no permission to {action} gs://{bucket}/{name}: {error}")


def _info(blob: storage.Blob) -> BlobInfo:
    updated = blob.updated.isoformat().replace("+00:00", "Z") if blob.updated else None
    return BlobInfo(blob.bucket.name, blob.name, int(blob.generation), int(blob.size or 0), blob.content_type, updated)
