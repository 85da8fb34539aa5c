"""HTTP helper (retries, rate limits, auth) against a real aiohttp server; token sources."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jwt
import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge.links.backoff import Backoff
from bridge.links.http_client import HttpClient, RateLimiter
from bridge.links.tokens import (
    CommandToken,
    FileToken,
    TokenSettings,
    check_not_expired,
    jwt_expiry,
    renew_when_due,
)
from bridge.model.errors import AuthFailure, ConfigError, TransportFailure, UpstreamConfigFailure

KEY = "k" * 32
ARRIVES_LATE = "x-test-arrives-late"  # a scripted answer's pseudo-header: seconds of delay


def make_jwt(exp: datetime, iss: str = "localhost") -> str:
    return jwt.encode({"iss": iss, "exp": int(exp.timestamp())}, KEY, algorithm="HS256")


@pytest.fixture
async def upstream():
    """A tiny HTTP upstream whose answers the test scripts."""
    script: list[tuple[int, dict[str, str], str]] = []
    seen: list[tuple[float, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        status, headers, body = script.pop(0) if script else (200, {}, '{"balance": 1.50}')
        if late := headers.pop(ARRIVES_LATE, None):  # the network held this request back
            await asyncio.sleep(float(late))
        seen.append((time.monotonic(), request.headers.get("Authorization")))
        return web.Response(
            status=status, headers=headers, text=body, content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/v1/balances", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", script, seen
    await runner.cleanup()


def client(url, **kw):
    async def headers():
        return {"Authorization": "Bearer t1"}

    return HttpClient(url, headers=headers, backoff=Backoff(0.01, 0.05), **kw)


async def test_get_json_decimal_and_auth_header(upstream):
    url, _script, seen = upstream
    async with client(url) as http:
        assert await http.get_json("/v1/balances") == {"balance": Decimal("1.50")}
    assert seen[0][1] == "Bearer t1"


async def test_retries_5xx_and_429_honouring_retry_after(upstream):
    url, script, seen = upstream
    script += [
        (500, {}, "oops"),
        (429, {"Retry-After": "0.2"}, "slow down"),
        (200, {}, '{"ok": true}'),
    ]
    async with client(url) as http:
        assert await http.get_json("/v1/balances") == {"ok": True}
    assert len(seen) == 3
    assert seen[2][0] - seen[1][0] >= 0.2


async def test_gives_up_after_retries_and_classifies_4xx(upstream):
    url, script, _seen = upstream
    script += [(503, {}, "")] * 3
    async with client(url, retries=2) as http:
        with pytest.raises(TransportFailure, match=r"GET /v1/balances failed 3 times: HTTP 503"):
            await http.get_json("/v1/balances")
        script.append((401, {}, "expired"))
        with pytest.raises(AuthFailure, match="HTTP 401"):
            await http.get_json("/v1/balances")
        script.append((404, {}, "nope"))
        with pytest.raises(UpstreamConfigFailure, match="HTTP 404: nope"):
            await http.get_json("/v1/balances")


async def test_an_html_page_instead_of_json_is_transport_trouble_not_a_decode_error(upstream):
    url, script, _seen = upstream
    script.append((200, {}, "<html><body>Down for maintenance</body></html>"))
    async with client(url) as http:
        with pytest.raises(TransportFailure) as caught:
            await http.get_json("/v1/balances")
    assert str(caught.value).startswith("GET /v1/balances: undecodable body (application/json: ")
    assert "Down for maintenance" in str(caught.value)
    assert type(caught.value.__cause__).__name__ == "JSONDecodeError"


async def test_rate_limiter_never_exceeds_any_window(upstream):
    url, _script, seen = upstream
    limiter = RateLimiter([(10, 0.5), (4, 0.1)])
    async with client(url, limiter=limiter) as http:
        await asyncio.gather(*(http.get_json("/v1/balances") for _ in range(20)))
    assert len(seen) == 20
    assert_within_limits([t for t, _ in seen], [(10, 0.5), (4, 0.1)])
    assert limiter.waited > 0


def assert_within_limits(arrivals: list[float], limits: list[tuple[int, float]]) -> None:
    """No window of any limit, wherever it starts, holds more arrivals than allowed."""
    arrivals = sorted(arrivals)
    for i, start in enumerate(arrivals):
        for count, period in limits:
            assert sum(1 for t in arrivals[i:] if t - start < period) <= count, (count, period)


async def test_rate_limiter_counts_a_request_until_its_answer_so_a_late_arrival_stays_in_its_window(
    upstream,
):
    """The upstream counts arrivals. A request the network holds back arrives beside the
    next window's first ones; counting from its answer, not from its sending, keeps the
    upstream's window within the limit all the same."""
    url, script, seen = upstream
    script.append((200, {ARRIVES_LATE: "0.08"}, '{"balance": 1}'))
    limiter = RateLimiter([(2, 0.2)])
    async with client(url, limiter=limiter) as http:
        await asyncio.gather(*(http.get_json("/v1/balances") for _ in range(4)))
    assert len(seen) == 4
    assert_within_limits([t for t, _ in seen], [(2, 0.2)])


def test_rate_limiter_delay_with_a_fake_clock():
    now = [0.0]
    limiter = RateLimiter([(100, 60), (20, 10)], clock=lambda: now[0])
    for _ in range(20):
        assert limiter.delay() == 0
        limiter._sent.append(now[0])
    assert limiter.delay() == 10  # burst of 20 per 10 s used up
    now[0] = 10
    assert limiter.delay() == 0


async def test_rate_limiter_waits_for_unanswered_requests_then_counts_from_their_answers():
    now = [0.0]
    limiter = RateLimiter([(2, 10)], clock=lambda: now[0])
    first, second = limiter.request(), limiter.request()
    await first.__aenter__()
    assert limiter.delay() == 0
    await second.__aenter__()
    assert limiter.delay() == math.inf  # both places taken until an answer is in
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()  # waiting for an answer, not for a time
    now[0] = 3
    await first.__aexit__(None, None, None)
    assert limiter.delay() == 10  # the first answer, at 3, frees its place at 13
    now[0] = 13
    await asyncio.wait_for(third, 1)  # woken by the answer, and the clock is past 13
    assert limiter.waited == 13
    assert limiter.delay() == 10  # the second still unanswered, the third sent at 13
    await second.__aexit__(None, None, None)
    assert limiter.delay() == 10


async def test_file_token_is_read_again_each_time(tmp_path):
    path = tmp_path / "token"
    path.write_text("one\n")
    source = TokenSettings(token_file=path).source()
    assert isinstance(source, FileToken)
    assert await source.get() == "one"
    path.write_text("two\n")
    assert await source.get() == "two"
    path.unlink()
    with pytest.raises(AuthFailure, match=r"cannot read token file .*: No such file or directory"):
        await source.get()


async def test_command_token():
    ok = CommandToken([sys.executable, "-c", "print('tok-123')"])
    assert await ok.get() == "tok-123"
    bad = CommandToken([sys.executable, "-c", "import sys; sys.exit('vault locked')"])
    with pytest.raises(AuthFailure, match="exited 1: vault locked"):
        await bad.get()


def test_token_settings_need_exactly_one():
    with pytest.raises(
        ValidationError, match="give exactly one of token, token_file, token_command"
    ):
        TokenSettings()
    with pytest.raises(ValidationError, match=r"\(got token, token_command\)"):
        TokenSettings(token="x", token_command=["echo"])


def test_jwt_expiry_and_expired_check():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = make_jwt(now + timedelta(hours=1))
    assert jwt_expiry(token) == now + timedelta(hours=1)
    assert jwt_expiry("not-a-jwt") is None
    check_not_expired(token, now, "ibex token")
    with pytest.raises(ConfigError, match="ibex token: the token expired at 2026-01-01T01:00:00"):
        check_not_expired(token, now + timedelta(hours=2), "ibex token")


async def test_renewal_when_a_fresh_token_appears(tmp_path, caplog):
    now = datetime.now(UTC)
    old = make_jwt(now + timedelta(seconds=1))
    path = tmp_path / "token"
    path.write_text(old)
    source = FileToken(path)
    task = asyncio.ensure_future(
        renew_when_due(source, old, margin=timedelta(seconds=2), poll=0.02)
    )
    await asyncio.sleep(0.1)
    assert not task.done()  # due, but nothing newer yet: warn and wait
    assert "expires at" in caplog.text and "no newer one is available" in caplog.text
    path.write_text(make_jwt(now + timedelta(hours=1)))
    reason = await asyncio.wait_for(task, 2)
    assert reason == f"a fresh token is available from file {path}"
