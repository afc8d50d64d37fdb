"""OIDC for the services: verify Pub/Sub push tokens, and fetch ID tokens for outgoing calls.

Push verification checks the RS256 signature against Google's certificates (or those at
OIDC_CERTS_URL, which tests point at 127.0.0.1), the times (issued, not before, expiry, and a
lifetime no longer than a Google ID token's hour), the audience, the issuer and the push
service account's verified email. The certificates are cached and fetched again when a
token names a key id that is not in the cache (key rotation).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from google.auth import exceptions as gauth_exceptions
from google.auth import jwt

from workers.core.errors import BadRequestError, ConfigError, TransientError
from workers.core.settings import ApiSettings, PushAuthSettings

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CLOCK_SKEW_SECONDS = 10
# Google's ID tokens live one hour: one that claims longer was not minted for a push.
MAX_TOKEN_LIFETIME_SECONDS = 3600
CERTS_TTL_SECONDS = 3600.0
UNKNOWN_KEY_REFETCH_SECONDS = 30.0
# A token is used only while it has at least this long left (a call may take minutes).
ID_TOKEN_REFRESH_MARGIN_SECONDS = 300.0


class AuthError(BadRequestError):
    """A push request without an acceptable token: 401 when it is not valid, 403 when it is
    valid but not the expected caller's."""

    code = "unauthorized"

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def pushes_come_from_an_emulator(pubsub_emulator_host: str) -> bool:
    """Pushes come from Pub/Sub: only a Pub/Sub emulator on this machine sends them unsigned."""
    host = pubsub_emulator_host.rsplit(":", 1)[0].strip("[]") if pubsub_emulator_host else ""
    return host in LOOPBACK


class PushVerifier:
    def __init__(self, *, audience: str, service_account: str, certs_url: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        if not audience or not service_account:
            raise ConfigError("PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT must be set when PUSH_AUTH=on")
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url or GOOGLE_CERTS_URL
        self._clock = clock
        self._certs: dict[str, str] = {}
        self._fetched_at = float("-inf")
        self._unknown_key_fetch_at = float("-inf")
        self._ttl = CERTS_TTL_SECONDS
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, push: PushAuthSettings, pubsub_emulator_host: str) -> "PushVerifier | None":
        """The verifier, or None when PUSH_AUTH=off, which only an emulator set-up may ask for."""
        if not push.push_auth:
            if not pushes_come_from_an_emulator(pubsub_emulator_host):
                raise ConfigError(
                    "PUSH_AUTH=off is refused: push verification may only be off when the pushes come "
                    "from a Pub/Sub emulator on the loopback (PUBSUB_EMULATOR_HOST=127.0.0.1:PORT)"
                )
            log.warning("push authentication is OFF (emulator set-up)")
            return None
        return cls(audience=push.push_audience, service_account=push.push_service_account,
                   certs_url=push.oidc_certs_url)

    async def verify(self, authorization: str | None, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Claims of a valid push token from the expected service account; raises AuthError."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token")
        token = authorization[len("Bearer "):].strip()
        key_id = _key_id(token)
        certs = await self._certificates(session, key_id)
        try:
            claims = jwt.decode(token, certs=certs, audience=self.audience,
                                clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except (ValueError, TypeError, gauth_exceptions.GoogleAuthError) as e:  # TypeError: a time as text
            raise AuthError(f"invalid token: {e}") from e
        _check_times(claims, self._clock())
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthError(f"token issuer {claims.get('iss')!r} is not Google")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise AuthError(f"token is for {claims.get('email')!r}, not the push service account", status=403)
        return claims

    async def _certificates(self, session: aiohttp.ClientSession, key_id: str) -> dict[str, str]:
        async with self._lock:
            now = self._clock()
            if now - self._fetched_at > self._ttl:
                await self._fetch(session)
            elif key_id not in self._certs and now - self._unknown_key_fetch_at >= UNKNOWN_KEY_REFETCH_SECONDS:
                # A key Google rotated in since the last fetch. At most one such fetch per interval,
                # so tokens with made-up key ids cannot make every request fetch the certificates.
                self._unknown_key_fetch_at = now
                await self._fetch(session)
            return self._certs

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.certs_url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                response.raise_for_status()
                certs = await response.json(content_type=None)
                self._ttl = _max_age(response.headers.get("Cache-Control", ""), CERTS_TTL_SECONDS)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            if self._certs:
                log.warning("could not refresh OIDC certificates (%s); keeping the cached ones", e)
                return
            raise TransientError(f"cannot fetch OIDC certificates from {self.certs_url}: {e}") from e
        self._certs = {str(k): str(v) for k, v in certs.items()}
        self._fetched_at = self._clock()


def _check_times(claims: dict[str, Any], now: float) -> None:
    """What google-auth leaves out: ``nbf``, the lifetime, and times that are no finite number."""
    times = {name: claims.get(name) for name in ("iat", "exp", "nbf")}
    for name, value in times.items():
        if value is None and name == "nbf":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AuthError(f"invalid token: claim {name} is not a time ({str(value)[:40]!r})")
    if times["nbf"] is not None and times["nbf"] - CLOCK_SKEW_SECONDS > now:
        raise AuthError("invalid token: not valid yet (nbf is in the future)")
    if times["exp"] - times["iat"] > MAX_TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise AuthError(f"invalid token: it lives {times['exp'] - times['iat']:.0f} s; Google's ID tokens "
                        f"live {MAX_TOKEN_LIFETIME_SECONDS} s")


def _key_id(token: str) -> str:
    try:
        header_b64 = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        return str(header.get("kid", ""))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError, AttributeError) as e:
        raise AuthError(f"malformed token: {e}") from e


def _max_age(cache_control: str, default: float) -> float:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age" and value.isdigit():
            return float(value)
    return default


Fetcher = Callable[[str], str]


def google_fetcher(audience: str) -> str:
    """An ID token for ``audience`` from the metadata server or the local credentials (blocking)."""
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)


class IdTokens:
    """ID tokens per audience, cached until shortly before they expire.

    ``fetch`` is blocking (google-auth uses requests) and so runs in a thread; one fetch per
    audience at a time, however many requests wait for it.
    """

    def __init__(self, fetch: Fetcher = google_fetcher, *, clock: Callable[[], float] = time.time,
                 margin_seconds: float = ID_TOKEN_REFRESH_MARGIN_SECONDS) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = margin_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    async def header(self, audience: str) -> dict[str, str]:
        lock = self._locks.setdefault(audience, asyncio.Lock())
        async with lock:
            cached = self._cache.get(audience)
            if cached is None or cached[1] - self._margin <= self._clock():
                token = await asyncio.to_thread(self._fetch, audience)
                self.fetches += 1
                expiry = float(jwt.decode(token, verify=False).get("exp", 0))
                cached = self._cache[audience] = (token, expiry)
        return {"Authorization": f"Bearer {cached[0]}"}


def id_tokens_from_settings(api: ApiSettings) -> Callable[[str], Awaitable[dict[str, str]]]:
    """What the api role adds to each call: an ID token header, or nothing when ID_TOKENS=off
    (refused unless both services are on the loopback)."""
    if not api.id_tokens:
        hosts = {urlsplit(u).hostname for u in (api.stt_url, api.ser_url)}
        if not hosts <= LOOPBACK:
            raise ConfigError("ID_TOKENS=off is refused unless STT_URL and SER_URL are on the loopback")

        async def no_header(audience: str) -> dict[str, str]:
            return {}

        return no_header
    return IdTokens().header
