"""How the GCS adapter reports the errors the emulator cannot produce: a 403 is a missing grant."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from workers.adapters.gcs import GcsBlobStore
from workers.errors import ConfigError, TransientError


class DeniedBlob:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def upload_from_string(self, *args, **kwargs):
        raise self.error

    def download_as_bytes(self, *args, **kwargs):
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
