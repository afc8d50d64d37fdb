"""Google Cloud Storage adapter of the BlobStore port.

Same semantics as ``adapters.local``: ``write(if_generation_match=0)`` stores only if the
object is absent and raises PreconditionFailed on GCS's 412; ``download`` streams exactly
one generation to a file and raises NotFound when that generation is gone. Errors that may
pass (429, 5xx, timeouts, connection resets) become TransientError so the web layer answers
5xx and Pub/Sub redelivers; a missing bucket on write is transient too (a deployment fault
that a fix resolves, not bad input). Errors are mapped by ``adapters.google_errors``: a 403 is
a ConfigError (a missing grant), a request GCS refuses as malformed (400, 414, 431: an invalid
bucket name or generation, a name too long) a PermanentError (``invalid_source``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from google.cloud import storage

from workers.adapters.google_errors import google_errors
from workers.core.errors import NotFound, PipelineError, TransientError
from workers.core.ports import BlobInfo

log = logging.getLogger(__name__)

# 8 MiB chunks: a long recording streams to disk without being held in memory.
DOWNLOAD_CHUNK_BYTES = 8 * 1024 * 1024
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
        with _mapped(f"write (if generation is {if_generation_match})", bucket, name,
                     missing=TransientError(f"bucket {bucket!r} does not exist (write of {name})")):
            # A conditional write is safe to retry, so the library's default retry applies.
            blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
        return int(blob.generation)

    def list(self, bucket: str, prefix: str = "") -> Iterator[BlobInfo]:
        with _mapped("list", bucket, prefix, missing=NotFound(f"bucket {bucket!r} does not exist")):
            for blob in self._client.list_blobs(bucket, prefix=prefix or None):
                yield _info(blob)

    def delete(self, bucket: str, name: str) -> None:
        with _mapped("delete", bucket, name, missing=None):
            self._client.bucket(bucket).blob(name).delete()

    def put(self, bucket: str, name: str, path: Path, content_type: str | None = None) -> int:
        """Upload a local file unconditionally, as a user's ``gcloud storage cp`` does."""
        blob = self._client.bucket(bucket).blob(name)
        with _mapped("upload", bucket, name, missing=TransientError(f"bucket {bucket!r} does not exist")):
            blob.upload_from_filename(str(path), content_type=content_type)
        return int(blob.generation)


def _mapped(action: str, bucket: str, name: str, *, missing: PipelineError | None):
    return google_errors(f"{action} gs://{bucket}/{name}", missing=missing)


def _info(blob: storage.Blob) -> BlobInfo:
    updated = blob.updated.isoformat().replace("+00:00", "Z") if blob.updated else None
    return BlobInfo(blob.bucket.name, blob.name, int(blob.generation), int(blob.size or 0), blob.content_type, updated)
