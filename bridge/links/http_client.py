"""HTTP for fallbacks and on-demand reads (aiohttp): auth header, timeouts, retries, rate limits."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from bridge.links.backoff import Backoff
from bridge.model.errors import AuthFailure, TransportFailure, UpstreamConfigFailure

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


class RateLimiter:
    """Client-side limits as ``(requests, seconds)`` windows, e.g. ``[(100, 60), (20, 10)]``.

    The upstream counts a request when it arrives, which is some time after we send it. So a
    request made through :meth:`request` counts from when it is sent until ``seconds`` after
    its answer came back: the next request that would exceed a window is sent only once the
    answer that frees its place is in, and no network delay can push two windows' worth into
    one at the upstream. :meth:`acquire` counts a one-way message (nothing to wait for) from
    when it is sent.
    """

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = list(limits)
        self._clock = clock
        self._sent: deque[float] = deque()  # in the order of the clock: appended as it reads
        self._open = 0  # requests sent and not answered yet
        self._answered = asyncio.Event()
        self._lock = asyncio.Lock()
        self.waited = 0.0

    def delay(self) -> float:
        """Seconds until one more request fits every window: 0 when it fits now, infinity
        while requests without an answer yet fill a window."""
        now = self._clock()
        horizon = max((period for _, period in self.limits), default=0.0)
        while self._sent and now - self._sent[0] >= horizon:
            self._sent.popleft()
        wait = 0.0
        for count, period in self.limits:
            recent = [t for t in self._sent if now - t < period]
            if len(recent) + self._open >= count:
                if self._open >= count:
                    return math.inf
                wait = max(wait, recent[self._open - count] + period - now)
        return wait

    async def _wait_for_room(self) -> None:
        start = self._clock()
        while (wait := self.delay()) > 0:
            if wait == math.inf:
                self._answered.clear()
                await self._answered.wait()
            else:
                await asyncio.sleep(wait)
        self.waited += self._clock() - start

    async def acquire(self) -> None:
        """Wait until a one-way message is allowed, then count it as sent now."""
        async with self._lock:
            await self._wait_for_room()
            self._sent.append(self._clock())

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """Wait until a request is allowed; it counts until the block ends (its answer is in,
        or it failed), and from then on as if sent at that moment."""
        async with self._lock:
            await self._wait_for_room()
            self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            self._sent.append(self._clock())
            self._answered.set()


class HttpClient:
    """JSON over HTTP with an auth header, retries on 5xx/429 and a rate limiter.

    401/403 raise AuthFailure (the caller refreshes its token); other 4xx UpstreamConfigFailure;
    network trouble and exhausted retries TransportFailure.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: Backoff | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.limiter = limiter
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.requests = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        import aiohttp  # a quarter of a second: only for providers that use HTTP

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET ``base_url + path`` and decode the JSON reply (floats as Decimal)."""
        return await self.request_json("GET", path, params=params)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
    ) -> Any:
        """One request with retries; returns the decoded JSON body."""
        if self._session is None:
            raise RuntimeError("use HttpClient as an async context manager")
        import aiohttp  # loaded by __aenter__ already

        url = f"{self.base_url}{path}"
        self.backoff.reset()
        last = "no attempt"
        cause: BaseException | None = None
        wait_at_least = 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(max(self.backoff.next(), wait_at_least))
            slot = self.limiter.request() if self.limiter is not None else nullcontext()
            async with slot:  # the limiter counts this attempt until its answer is in
                headers = dict(await self.headers()) if self.headers is not None else {}
                self.requests += 1
                try:
                    async with self._session.request(
                        method, url, params=params, json=body, headers=headers
                    ) as resp:
                        raw = await resp.read()
                        text = raw.decode(resp.get_encoding() if raw else "utf-8", errors="replace")
                        content_type = resp.content_type
                        status = resp.status
                        retry_after = resp.headers.get("Retry-After")
                except (aiohttp.ClientError, TimeoutError, OSError, LookupError) as exc:
                    last = f"{type(exc).__name__}: {exc}".rstrip(": ")
                    cause = exc
                    continue
            if status < 400:
                return _decode(method, path, text, content_type)
            if status in (401, 403):
                raise AuthFailure(f"{method} {path}: HTTP {status}")
            if status == 429 or status >= 500:
                last, cause = f"HTTP {status}", None
                wait_at_least = _seconds(retry_after)
                continue
            raise UpstreamConfigFailure(f"{method} {path}: HTTP {status}: {text[:200]}")
        failure = TransportFailure(f"{method} {path} failed {self.retries + 1} times: {last}")
        raise failure from cause


def _decode(method: str, path: str, text: str, content_type: str) -> Any:
    """A JSON body (floats as Decimal); anything else (an HTML maintenance page) is a
    TransportFailure: the upstream is not answering as itself."""
    if not text:
        return None
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        snippet = " ".join(text[:60].split())
        raise TransportFailure(
            f"{method} {path}: undecodable body ({content_type or 'no content type'}: {snippet!r})"
        ) from exc


def _seconds(retry_after: str | None) -> float:
    """A ``Retry-After`` given in seconds (an HTTP date is ignored: backoff applies)."""
    try:
        return max(0.0, float(retry_after)) if retry_after else 0.0
    except ValueError:
        return 0.0
