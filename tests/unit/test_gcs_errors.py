"""How the GCS adapter reports the errors the emulator cannot produce: a 403 is a missing grant."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from workers.adapters.gcs import GcsBlobStore
from workers.core.errors import ConfigError, PermanentError, TransientError


class DeniedBlob:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def upload_from_string(self, *args, **kwargs):
        raise self.error

    def download_as_bytes(self, *args, **kwargs):
        raise self.error

    def download_to_filename(self, *args, **kwargs):
        raise self.error


class Client:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def bucket(self, name):
        client = self

        class Bucket:
            def blob(self, *args, **kwargs):
                return DeniedBlob(client.error)

            def get_blob(self, *args, **kwargs):
                raise client.error

        return Bucket()

    def list_blobs(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize("call", [
    lambda s: s.write("staging", "ledger/x", b"{}", if_generation_match=7),
    lambda s: s.read("staging", "ledger/x"),
    lambda s: s.stat("staging", "ledger/x"),
    lambda s: list(s.list("inbox")),
])
def test_a_forbidden_request_is_a_config_error_naming_the_object(call):
    store = GcsBlobStore(Client(gexc.Forbidden("caller does not have storage.objects.delete access")))
    with pytest.raises(ConfigError, match=r"no permission to .* gs://(staging|inbox)/"):
        call(store)


def test_a_server_error_stays_transient():
    store = GcsBlobStore(Client(gexc.ServiceUnavailable("backend unavailable")))
    with pytest.raises(TransientError):
        store.read("staging", "ledger/x")


@pytest.mark.parametrize("error", [
    gexc.BadRequest("Invalid bucket name: 'Not A Bucket!'"),
    gexc.from_http_status(431, "Request Header Fields Too Large"),
])
def test_a_request_gcs_refuses_as_malformed_is_permanent_so_the_job_gets_a_failed_partial(error, tmp_path):
    store = GcsBlobStore(Client(error))
    with pytest.raises(PermanentError) as refused:
        store.download("Not A Bucket!", "a.wav", 5, tmp_path / "audio")
    assert refused.value.code == "invalid_source"


def test_a_lost_precondition_is_not_taken_for_a_malformed_request():
    store = GcsBlobStore(Client(gexc.PreconditionFailed("generation does not match")))
    with pytest.raises(Exception) as lost:
        store.write("staging", "j/stt.json", b"{}", if_generation_match=0)
    assert not isinstance(lost.value, PermanentError) and "does not match" in str(lost.value)
