"""The one-file API: STT and SER called concurrently with ID tokens, partials merged."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp.test_utils import TestClient, TestServer

from tests.audio_factory import png_bytes
from tests.handlers_factory import make_handlers
from tests.unit.test_service import EMULATED, WAV, FakeSer, FakeStt, wait_ready
from workers.entrypoints.http.app import create_app


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def run_api(scenario, delay: float = 0.6):
    audiences: list[str] = []

    async def id_token_header(audience: str) -> dict[str, str]:
        audiences.append(audience)
        return {"Authorization": f"Bearer token-for-{audience}"}

    async def main():
        stt_app = create_app(EMULATED, "stt", build=lambda: make_handlers(stt=FakeStt(delay)))
        ser_app = create_app(EMULATED, "ser", build=lambda: make_handlers(ser=FakeSer(delay)))
        async with TestServer(stt_app, host="127.0.0.1") as stt, TestServer(ser_app, host="127.0.0.1") as ser:
            settings = EMULATED.replace(stt_url=str(stt.make_url("")), ser_url=str(ser.make_url("")),
                                        ser_audience="https://ser.example")
            api = create_app(settings, "api", id_token_header=id_token_header)
            async with TestClient(TestServer(api, host="127.0.0.1")) as client:
                await wait_ready(client)
                return await scenario(client, settings)

    return asyncio.run(main()), audiences


def test_analyze_calls_stt_and_ser_concurrently_and_returns_the_merged_result():
    async def scenario(client, settings):
        r = await client.post("/v1/analyze", data=WAV, headers={"Content-Type": "audio/wav", "X-Filename": "a.wav"})
        return r.status, await r.json(), settings

    (status, result, settings), audiences = run_api(scenario)
    assert status == 200 and result["status"] == "ok"
    assert result["job"]["name"] == "a.wav" and result["job"]["source"] == "api"
    assert result["segments"][0]["text"] == "hello." and result["segments"][0]["emotion"]["label"] == "happy"
    stt, ser = result["timings"]["stt"], result["timings"]["ser"]
    # Each service recorded when it worked on the audio: the two intervals overlap.
    assert _t(stt["started_at"]) < _t(ser["finished_at"]) and _t(ser["started_at"]) < _t(stt["finished_at"])
    assert sorted(audiences) == sorted([settings.api.stt_url, "https://ser.example"])


def test_analyze_of_bad_audio_is_a_422_failed_result_and_an_empty_body_a_400():
    async def scenario(client, settings):
        bad = await client.post("/v1/analyze", data=png_bytes())
        empty = await client.post("/v1/analyze", data=b"")
        return bad.status, await bad.json(), empty.status

    (bad, result, empty), _ = run_api(scenario, delay=0.0)
    assert bad == 422 and result["status"] == "failed" and result["error"]["code"]
    assert empty == 400


def test_analyze_answers_502_when_a_service_is_down():
    async def main():
        settings = EMULATED.replace(stt_url="http://127.0.0.1:9", ser_url="http://127.0.0.1:9")

        async def no_token(audience):
            return {}

        api = create_app(settings, "api", id_token_header=no_token)
        async with TestClient(TestServer(api, host="127.0.0.1")) as client:
            r = await client.post("/v1/analyze", data=WAV)
            return r.status

    assert asyncio.run(main()) == 502


def test_when_one_service_fails_the_call_to_the_other_is_cancelled():
    async def main():
        ser_app = create_app(EMULATED, "ser", build=lambda: make_handlers(ser=FakeSer(delay=3.0)))
        async with TestServer(ser_app, host="127.0.0.1") as ser:
            settings = EMULATED.replace(stt_url="http://127.0.0.1:9", ser_url=str(ser.make_url("")))

            async def no_token(audience):
                return {}

            api = create_app(settings, "api", id_token_header=no_token)
            async with TestClient(TestServer(api, host="127.0.0.1")) as client:
                await wait_ready(client)
                r = await client.post("/v1/analyze", data=WAV)
                await asyncio.sleep(0.1)  # a cancelled task finishes on the loop's next turns
                calls_left = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_call" and not t.done()]
                return r.status, calls_left

    status, calls_left = asyncio.run(main())
    # STT is down: a 502, and the SER call (3 s to go) no longer holds a connection for nobody.
    assert status == 502 and calls_left == []
