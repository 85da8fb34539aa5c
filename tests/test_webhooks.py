"""The shared webhook server: every rejection a clear 4xx and no event; 2xx only once queued."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import aiohttp
import pytest

from bridge.config.settings import WebhookSettings
from bridge.links.webhook_server import WebhookRoute, WebhookServer, client_address

VEZGO_IPS = tuple(
    ipaddress.ip_network(f"{ip}/32")
    for ip in ("52.60.234.183", "52.60.240.87", "52.60.241.79", "52.60.242.161")
)
HOOK = {
    "hook": "SyncAccount",
    "user": {"id": "u1", "loginName": "alice"},
    "account": {"id": "a1", "provider": "x"},
}


async def start(settings: WebhookSettings, route: WebhookRoute):
    server = WebhookServer(settings)
    received: list[Any] = []
    server.add(route, received.append)
    group = asyncio.TaskGroup()
    await group.__aenter__()
    task = group.create_task(server.run())
    await asyncio.wait_for(server.listening.wait(), 5)
    return server, received, group, task


@pytest.fixture
async def open_server():
    opened = []

    async def factory(route: WebhookRoute, **settings):
        out = await start(WebhookSettings(port=0, **settings), route)
        opened.append(out)
        return out[0], out[1]

    yield factory
    for _server, _received, group, task in opened:
        task.cancel()
        await group.__aexit__(None, None, None)


async def post(server, path="/hooks/vezgo", body: bytes | None = None, headers=None, method="POST"):
    data = body if body is not None else b'{"hook":"SyncAccount"}'
    hdrs = {"Content-Type": "application/json", "x-client-id": "app-1", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"http://127.0.0.1:{server.port}{path}", data=data, headers=hdrs
        ) as resp,
    ):
        return resp.status, await resp.json()


ROUTE = WebhookRoute(
    "/hooks/vezgo",
    allow=(ipaddress.ip_network("127.0.0.0/8"),),
    required_headers={"x-client-id": "app-1"},
)


async def test_accepted_post_is_handed_over_before_the_2xx(open_server):
    import json

    server, received = await open_server(ROUTE)
    status, body = await post(server, body=json.dumps(HOOK).encode())
    assert (status, body) == (200, {"status": "accepted"})
    assert received == [HOOK]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}/healthz") as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "routes": ["/hooks/vezgo"], "accepted": 1}


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"method": "GET"}, 405, "method GET not allowed; use POST"),
        ({"path": "/hooks/other"}, 404, "no webhook at /hooks/other"),
        ({"headers": {"x-client-id": "someone-else"}}, 403, "wrong value of header x-client-id"),
        (
            {"headers": {"Content-Type": "text/plain"}},
            415,
            "content type must be application/json, not text/plain",
        ),
        (
            {"body": b'{"hook": '},
            400,
            "body is not valid JSON: Expecting value: line 1 column 10 (char 9)",
        ),
        ({"body": b'{"pad":"' + b"x" * 70_000 + b'"}'}, 413, "body larger than 65536 bytes"),
    ],
)
async def test_every_rejection_is_a_clear_4xx_and_produces_nothing(
    open_server, kwargs, status, error
):
    server, received = await open_server(ROUTE)
    assert await post(server, **kwargs) == (status, {"error": error})
    assert received == []


async def test_missing_header(open_server):
    server, received = await open_server(ROUTE)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{server.port}/hooks/vezgo", json=HOOK) as resp,
    ):
        assert resp.status == 401
        assert await resp.json() == {"error": "missing header x-client-id"}
    assert received == []


async def test_source_allowlist_direct_and_through_a_trusted_proxy(open_server):
    vezgo = WebhookRoute("/hooks/vezgo", allow=VEZGO_IPS, required_headers={"x-client-id": None})
    # no trusted proxy: X-Forwarded-For is ignored, the peer (127.0.0.1) is not Vezgo
    server, received = await open_server(vezgo)
    assert await post(server, headers={"X-Forwarded-For": "52.60.234.183"}) == (
        403,
        {"error": "source address 127.0.0.1 is not allowed"},
    )
    # behind a trusted proxy (127.0.0.1), the forwarded client counts
    proxied, got = await open_server(vezgo, trusted_proxies=["127.0.0.1/32"])
    assert (await post(proxied, headers={"X-Forwarded-For": "52.60.234.183"}))[0] == 200
    assert await post(proxied, headers={"X-Forwarded-For": "203.0.113.9"}) == (
        403,
        {"error": "source address 203.0.113.9 is not allowed"},
    )
    # a client cannot smuggle an allowed address in front of the proxy's own entry
    assert await post(proxied, headers={"X-Forwarded-For": "52.60.234.183, 203.0.113.9"}) == (
        403,
        {"error": "source address 203.0.113.9 is not allowed"},
    )
    assert len(got) == 1 and received == []


def test_client_address_walks_trusted_hops():
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert str(client_address("10.0.0.1", "1.2.3.4, 10.0.0.7", trusted)) == "1.2.3.4"
    assert str(client_address("192.0.2.1", "1.2.3.4", trusted)) == "192.0.2.1"
    assert client_address("10.0.0.1", "garbage", trusted) is None


async def test_webhook_link_delivers_accepted_posts_to_the_provider():
    from bridge.api import WebhookSpec
    from bridge.config.settings import SupervisorSettings
    from bridge.pipeline.context import InstanceContext
    from bridge.runtime.faults import SeenFaults
    from bridge.runtime.supervisor import ConnectionRunner
    from bridge.testing.simulator import WebhookSender
    from tests.test_ws_link import EchoProvider, EchoSettings, RecordingHub, until

    server = WebhookServer(WebhookSettings(port=0))
    provider = EchoProvider("hooks", EchoSettings())
    hub = RecordingHub()
    ctx = InstanceContext(provider, hub, server)
    spec = WebhookSpec(route=WebhookRoute("/hooks/echo", required_headers={"x-client-id": None}))
    link = ConnectionRunner(provider, ctx, spec, SupervisorSettings(), SeenFaults())
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(server.run())
        running = tg.create_task(link.run())
        await asyncio.wait_for(server.listening.wait(), 5)
        await until(lambda: ("connected", None) in hub.links())
        sender = WebhookSender(f"http://127.0.0.1:{server.port}/hooks/echo", {"x-client-id": "c"})
        assert await sender.send({"type": "event", "n": 42}) == (200, {"status": "accepted"})
        assert hub.ids() == ["42"]  # parsed and in the outbox before the 200
        assert (await sender.send(None, raw=b"{nope"))[0] == 400
        assert hub.ids() == ["42"]
        await link.close()
        await asyncio.wait_for(running, 2)
        sender404 = await sender.send({"type": "event", "n": 43})
        assert sender404 == (404, {"error": "no webhook at /hooks/echo"})
        serving.cancel()


async def test_a_route_check_refuses_a_body_with_422_and_nothing_reaches_the_provider(open_server):
    def check(body):
        return None if isinstance(body, dict) and "account" in body else "body has no account"

    route = WebhookRoute("/hooks/vezgo", required_headers={"x-client-id": "app-1"}, check=check)
    server, received = await open_server(route)
    assert await post(server, body=b'{"hook":"SyncAccount"}') == (
        422,
        {"error": "body has no account"},
    )
    assert await post(server, body=b'{"account":{"id":"a"}}') == (200, {"status": "accepted"})
    assert received == [{"account": {"id": "a"}}]


async def test_route_trusted_proxies_and_loopback_alias_sources(open_server):
    from bridge.testing.simulator import WebhookSender

    route = WebhookRoute(
        "/hooks/vezgo",
        allow=(*VEZGO_IPS, ipaddress.ip_network("127.0.0.2/32")),
        trusted_proxies=(ipaddress.ip_network("127.0.0.3/32"),),
    )
    server, received = await open_server(route)  # the server itself trusts no proxy
    url = f"http://127.0.0.1:{server.port}/hooks/vezgo"
    sender = WebhookSender(url, source="127.0.0.2")
    assert await sender.send({"n": 1}) == (200, {"status": "accepted"})
    assert await sender.send({"n": 2}, source="127.0.0.4") == (
        403,
        {"error": "source address 127.0.0.4 is not allowed"},
    )
    # the route's proxy: its forwarded client counts; anyone else's header is ignored
    proxy = WebhookSender(url, source="127.0.0.3")
    assert (await proxy.send({"n": 3}, forwarded_for="52.60.241.79"))[0] == 200
    assert (await sender.send({"n": 4}, source="127.0.0.5", forwarded_for="52.60.241.79")) == (
        403,
        {"error": "source address 127.0.0.5 is not allowed"},
    )
    assert received == [{"n": 1}, {"n": 3}]
