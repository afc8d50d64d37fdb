"""Push authentication with tokens signed by a local key (certs served on 127.0.0.1), and the
api role's ID-token cache."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.auth import crypt, jwt

from tests.oidc_factory import PUSH_SA, SigningKey, certs_page
from tests.handlers_factory import make_handlers
from tests.unit.test_service import WAV, FakeStt, upload, wait_ready
from workers.adapters.memory import MemoryBlobStore
from workers.adapters.pubsub import encode_push
from workers.core.contracts import to_dict
from workers.entrypoints.http.app import create_app
from workers.entrypoints.http.auth import UNKNOWN_KEY_REFETCH_SECONDS, AuthError, IdTokens, PushVerifier
from workers.core.settings import Settings

AUDIENCE = "https://stt-abc-uc.a.run.app/push/job"


@dataclass(frozen=True)
class Keys:
    key: SigningKey
    rotated: SigningKey
    attacker: SigningKey  # same key id as ``key``, another private key


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(SigningKey.generate("key-1"), SigningKey.generate("key-2"), SigningKey.generate("key-1"))


def run_with_certs(keys: Keys, scenario):
    """Serve the certificate page, then the STT service verifying against it; run ``scenario``."""
    served = {"page": certs_page(keys.key)}

    async def certs(request):
        return web.json_response(served["page"], headers={"Cache-Control": "public, max-age=3600"})

    async def main():
        cert_app = web.Application()
        cert_app.router.add_get("/certs", certs)
        async with TestServer(cert_app, host="127.0.0.1") as cert_server:
            settings = Settings.from_env({}, push_audience=AUDIENCE, push_service_account=PUSH_SA,
                                         oidc_certs_url=str(cert_server.make_url("/certs")))
            store = MemoryBlobStore()
            job = upload(store, "a.wav", WAV)
            app = create_app(settings, "stt", build=lambda: make_handlers(store, stt=FakeStt()))
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                await wait_ready(client)

                async def push(token: str | None):
                    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
                    r = await client.post("/push/job", data=encode_push(to_dict(job)), headers=headers)
                    return r.status

                return await scenario(push, served), store

    return asyncio.run(main())


# Each token is minted inside the test, at the time it is pushed: one that is "not valid before
# now + 600 s" minted at collection is valid by the time a slow suite reaches it.
BAD_TOKENS = {
    "none": (lambda k: None, 401),
    "not a jwt": (lambda k: "not-a-jwt", 401),
    "forged signature": (lambda k: k.attacker.token(audience=AUDIENCE), 401),
    "expired": (lambda k: k.key.token(audience=AUDIENCE, expires_in=-120), 401),
    "another audience": (lambda k: k.key.token(audience="https://other-service.a.run.app/push/job"), 401),
    "another issuer": (lambda k: k.key.token(audience=AUDIENCE, issuer="https://evil.example"), 401),
    "another account": (lambda k: k.key.token(audience=AUDIENCE,
                                              email="someone-else@local-dev.iam.gserviceaccount.com"), 403),
    "not valid yet": (lambda k: k.key.token(audience=AUDIENCE, nbf=int(time.time()) + 600), 401),
    "lives a century": (lambda k: k.key.token(audience=AUDIENCE, expires_in=100 * 365 * 86400), 401),  # Google: 1 h
    "expires at infinity": (lambda k: k.key.token(audience=AUDIENCE, exp=float("inf")), 401),
    "exp is no number": (lambda k: k.key.token(audience=AUDIENCE, exp=str(int(time.time()) + 600)), 401),
    "iat is no number": (lambda k: k.key.token(audience=AUDIENCE, iat=str(int(time.time()))), 401),
    "email_verified a string": (lambda k: k.key.token(audience=AUDIENCE, email_verified="false"), 403),  # truthy
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_push_tokens_are_rejected_and_nothing_is_written(keys, case):
    mint, status = BAD_TOKENS[case]

    async def scenario(push, served):
        return await push(mint(keys))

    got, store = run_with_certs(keys, scenario)
    assert got == status
    assert list(store.list("staging")) == []


def test_a_valid_push_token_is_accepted_and_a_rotated_key_is_fetched_again(keys):
    async def scenario(push, served):
        first = await push(keys.key.token(audience=AUDIENCE))
        served["page"] = certs_page(keys.key, keys.rotated)
        second = await push(keys.rotated.token(audience=AUDIENCE))
        return first, second

    (first, second), store = run_with_certs(keys, scenario)
    assert (first, second) == (204, 204)
    assert [b.name.rsplit("/", 1)[-1] for b in store.list("staging")] == ["stt.json"]


def test_tokens_with_unknown_key_ids_cannot_make_every_request_fetch_the_certificates(keys):
    fetches = []
    now = [1000.0]

    async def certs(request):
        fetches.append(now[0])
        return web.json_response(certs_page(keys.key), headers={"Cache-Control": "public, max-age=3600"})

    async def main():
        app = web.Application()
        app.router.add_get("/certs", certs)
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
            verifier = PushVerifier(audience=AUDIENCE, service_account=PUSH_SA,
                                    certs_url=str(server.make_url("/certs")), clock=lambda: now[0])
            await verifier.verify(f"Bearer {keys.key.token(audience=AUDIENCE)}", session)
            for i in range(5):
                forged = SigningKey.generate(f"made-up-{i}")
                with pytest.raises(AuthError):
                    await verifier.verify(f"Bearer {forged.token(audience=AUDIENCE)}", session)
            now[0] += UNKNOWN_KEY_REFETCH_SECONDS
            with pytest.raises(AuthError):
                await verifier.verify(f"Bearer {keys.rotated.token(audience=AUDIENCE)}", session)

    asyncio.run(main())
    assert fetches == [1000.0, 1000.0, 1000.0 + UNKNOWN_KEY_REFETCH_SECONDS]  # first use, one unknown id, later one


def test_id_tokens_are_cached_per_audience_until_shortly_before_expiry(keys):
    now = [1_000_000.0]
    fetched = []

    def fetch_at_now(audience: str) -> str:
        fetched.append(audience)
        signer = crypt.RSASigner.from_string(keys.key.private_pem, keys.key.key_id)
        return jwt.encode(signer, {"aud": audience, "exp": int(now[0]) + 3600}).decode()

    tokens = IdTokens(fetch_at_now, clock=lambda: now[0], margin_seconds=300)

    async def main():
        a1 = await tokens.header("https://stt")
        a2 = await tokens.header("https://stt")
        b = await tokens.header("https://ser")
        now[0] += 3600 - 299  # inside the margin: refresh
        a3 = await tokens.header("https://stt")
        return a1, a2, b, a3

    a1, a2, b, a3 = asyncio.run(main())
    assert a1 == a2 and a1["Authorization"].startswith("Bearer ")
    assert b != a1 and a3 != a1
    assert fetched == ["https://stt", "https://ser", "https://stt"]
