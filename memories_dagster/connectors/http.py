"""REST APIs as sources: auth, pagination, rate limiting, retries, a circuit breaker, a cache.

One :class:`ApiClient` per source read. Requests go through, in order: the response cache
(memory or Redis, with a TTL), the circuit breaker (open after N consecutive failures, one trial
request after the reset time), the rate limiter (a token bucket: at most ``requests_per_second``
on average, bursts of ``burst``), and retries with exponential backoff (tenacity) that wait as
long as a 429/503 ``Retry-After`` asks, up to ``max_backoff``. Each request must be answered in
full within ``timeout`` seconds (a deadline, not a per-read timeout), and with ``deadline`` the
whole read of the source within that many. Pages are followed by page number, offset, cursor or
the ``Link: rel="next"`` header until a page comes back short or empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import tenacity

from memories_dagster.connectors.deadlines import DeadlineTransport, deadline
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.secrets import named_secret, redact, register

RETRY_STATUSES = {429, 500, 502, 503, 504}


class ApiError(ConnectorError):
    """An API that cannot be read; the message names the source and the URL, never a secret."""


class ApiUnavailableError(ApiError, UnavailableError):
    """An API that did not answer in time or kept failing with 429/5xx: worth trying again later."""


class _Retryable(Exception):
    def __init__(self, status: int, wait: float | None, detail: str) -> None:
        super().__init__(detail)
        self.status, self.wait = status, wait


@dataclass
class TokenBucket:
    """At most ``rate`` acquisitions per second on average, ``burst`` at once."""

    rate: float
    burst: int = 1
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens, self._stamp = float(self.burst), time.monotonic()

    def acquire(self) -> None:
        """Wait until a request may go."""
        with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                time.sleep((1 - self._tokens) / self.rate)


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive failed requests; lets one try after ``reset_seconds``."""

    failures: int
    reset_seconds: float
    _count: int = 0
    _opened: float | None = None

    def before(self, url: str) -> None:
        """Refuse while open (until the reset time has passed)."""
        if self._opened is not None and time.monotonic() - self._opened < self.reset_seconds:
            raise ApiUnavailableError(
                f"circuit open for {url}: {self._count} consecutive failures; no request for "
                f"{self.reset_seconds:g} s after the last one"
            )

    def record(self, ok: bool) -> None:
        """Count a request's outcome."""
        if ok:
            self._count, self._opened = 0, None
            return
        self._count += 1
        if self._count >= self.failures:
            self._opened = time.monotonic()

    @property
    def is_open(self) -> bool:
        """Whether requests are refused now."""
        return self._opened is not None and time.monotonic() - self._opened < self.reset_seconds


class ResponseCache:
    """JSON responses by request, for ``ttl`` seconds: in this process, or in Redis when given."""

    def __init__(self, ttl: float, redis_url: str | None = None) -> None:
        self.ttl = ttl
        self.hits = self.misses = 0
        self.unavailable = False
        self._memory: dict[str, tuple[float, Any]] = {}
        self._redis = None
        if redis_url:
            import redis  # on use: only pipelines with a Redis cache need it

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)

    @staticmethod
    def key(method: str, url: str, params: dict[str, Any], body: Any = None, headers: Any = None) -> str:
        """A key naming the whole request (credentials only as part of a one-way hash)."""
        raw = json.dumps([method, url, sorted((str(k), str(v)) for k, v in params.items()), body,
                          sorted((str(k), str(v)) for k, v in dict(headers or {}).items())], default=str)
        return "memories:api:" + hashlib.sha256(raw.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        """The cached body, or None (also when the cache server cannot be reached)."""
        if self._redis is not None:
            value = self._guard(lambda: self._redis.get(key))
            body = None if value is None else json.loads(value)
        else:
            stamp, body = self._memory.get(key, (0.0, None))
            if body is not None and time.monotonic() - stamp > self.ttl:
                body = None
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
        return body

    def put(self, key: str, body: Any) -> None:
        """Keep a body for the TTL."""
        if self._redis is not None:
            self._guard(lambda: self._redis.set(key, json.dumps(body), ex=max(1, int(self.ttl))))
        else:
            self._memory[key] = (time.monotonic(), body)


    def _guard(self, call):
        """A cache that is down is a cache miss, with a warning, not a failed source."""
        import redis

        try:
            return call()
        except redis.RedisError as exc:
            if not self.unavailable:
                logging.getLogger("memories_dagster").warning("response cache unavailable, reading without it: %s", redact(str(exc)))
            self.unavailable = True
            return None


@dataclass
class Pagination:
    """How the API splits results into pages."""

    type: str = "none"  # none, page, offset, cursor, link, odata
    page_param: str = "page"
    size_param: str | None = None
    page_size: int = 100
    start: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    max_pages: int = 10_000


def dig(body: Any, path: str | None) -> Any:
    """``a.b.c`` inside a JSON body (None if absent); an empty path is the body itself."""
    for part in (path or "").split("."):
        if not part:
            continue
        if isinstance(body, dict):
            body = body.get(part)
        elif isinstance(body, list) and part.isdigit():
            body = body[int(part)] if int(part) < len(body) else None
        else:
            return None
    return body


class ApiClient:
    """Reads every record of one API source."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        auth: httpx.Auth | None = None,
        records_path: str | None = None,
        pagination: Pagination | None = None,
        rate: TokenBucket | None = None,
        breaker: CircuitBreaker | None = None,
        cache: ResponseCache | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 30.0,
        deadline_seconds: float | None = None,
    ) -> None:
        self.name, self.url, self.method = name, url, method.upper()
        self.params, self.body = dict(params or {}), body
        self.sticky: dict[str, Any] = {}  # sent on every page, next links included (an API key)
        self.records_path = records_path
        self.pagination = pagination or Pagination()
        self.rate, self.breaker, self.cache = rate, breaker, cache
        self.attempts, self.backoff, self.max_backoff = attempts, backoff, max_backoff
        self.requests = 0
        self.timeout, self.deadline_seconds = timeout, deadline_seconds
        self.ends = time.monotonic() + deadline_seconds if deadline_seconds else None  # one client per source read
        self.client = httpx.Client(headers=headers, auth=auth, timeout=timeout, follow_redirects=True,
                                   transport=DeadlineTransport())

    def close(self) -> None:
        """Release connections."""
        self.client.close()

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of every page."""
        paging, url, params = self.pagination, self.url, dict(self.params)
        if paging.type == "page":
            params[paging.page_param] = paging.start
        if paging.type == "offset":
            params[paging.offset_param], params[paging.limit_param] = 0, paging.page_size
        if paging.type == "odata":
            params.setdefault("$top", paging.page_size)
            params.setdefault("$skip", 0)
        if paging.size_param and paging.type == "page":
            params[paging.size_param] = paging.page_size
        for _ in range(paging.max_pages):
            body, links = self.fetch(url, params)
            page = dig(body, self.records_path) if self.records_path or paging.type != "odata" else odata_records(body)
            if page is None and self.records_path:
                shape = (f"its top-level keys: {', '.join(map(str, body)) or 'none'}" if isinstance(body, dict)
                         else f"its body is a list of {len(body)} items, not an object" if isinstance(body, list)
                         else f"its body is {type(body).__name__}, not an object")
                raise ApiError(
                    f"source '{self.name}': records_path '{self.records_path}' is not in the response of "
                    f"{redact(url)}; {shape}"
                )
            if page is None:
                page = []
            if isinstance(page, dict):
                page = [page]
            if not isinstance(page, list):
                raise ApiError(f"source '{self.name}': {self.records_path or 'the body'} of {redact(url)} is not a list of records")
            yield from page
            if paging.type == "none" or not page:
                return
            if paging.type == "page":
                if paging.size_param and len(page) < paging.page_size:
                    return
                params[paging.page_param] += 1
            elif paging.type == "offset":
                if len(page) < paging.page_size:
                    return
                params[paging.offset_param] += len(page)
            elif paging.type == "cursor":
                cursor = dig(body, paging.cursor_path)
                if not cursor:
                    return
                params[paging.cursor_param] = cursor
            elif paging.type == "odata":
                following = odata_next(body)
                if following:  # server-driven paging: the link carries its own $skiptoken
                    url, params = str(httpx.URL(url).join(following)), {}
                elif len(page) < int(params.get("$top", paging.page_size)):
                    return
                else:
                    params["$skip"] = int(params.get("$skip", 0)) + len(page)
            elif paging.type == "link":
                following = links.get("next")
                if not following:
                    return
                url, params = str(following), {}
        raise ApiError(f"source '{self.name}': more than {paging.max_pages} pages from {redact(self.url)}; raise pagination.max_pages")

    def fetch(self, url: str, params: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """One page: from the cache, or through breaker, rate limit and retries."""
        params = {**params, **self.sticky}
        key = ResponseCache.key(self.method, url, params, self.body, self.client.headers) if self.cache else ""
        if self.cache:
            cached = self.cache.get(key)
            if cached is not None:
                return cached["body"], cached["links"]
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_Retryable, httpx.TransportError)),
            reraise=True,
        )
        try:
            body, links = retrying(self._request, url, params)
        except (_Retryable, httpx.TransportError) as exc:
            attempts = retrying.statistics.get("attempt_number", self.attempts)
            if isinstance(exc, _Retryable):
                raise ApiUnavailableError(f"source '{self.name}': {redact(str(exc))} (after {attempts} attempts)") from exc
            raise ApiUnavailableError(redact(f"source '{self.name}': cannot reach {url}: {exc} (after {attempts} attempts)")) from exc
        if self.cache:
            self.cache.put(key, {"body": body, "links": links})
        return body, links

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = self.backoff * 2 ** (state.attempt_number - 1)
        if isinstance(error, _Retryable) and error.wait is not None:
            wait = max(error.wait, 0.0)  # the server said how long; max_backoff still bounds it
        return min(wait, self.max_backoff, self._left() if self.ends else wait)

    def _left(self) -> float:
        """Seconds left of the source's deadline (an error once it has passed)."""
        left = self.ends - time.monotonic() if self.ends else self.timeout
        if left <= 0:
            raise ApiUnavailableError(
                f"source '{self.name}': reading took longer than api.deadline_seconds ({self.deadline_seconds:g} s) "
                f"after {self.requests} requests"
            )
        return left

    def _request(self, url: str, params: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        request_seconds = min(self.timeout, self._left())
        if self.breaker:
            self.breaker.before(redact(url))
        if self.rate:
            self.rate.acquire()
        self.requests += 1
        try:
            # merged, not replaced: a next link's own query (p=2, $skiptoken) stays
            target = httpx.URL(url).copy_merge_params(params) if params else url
            with deadline(request_seconds):  # the whole answer, not each read, within the timeout
                response = self.client.request(self.method, target, json=self.body)
        except httpx.TransportError:
            if self.breaker:
                self.breaker.record(False)
            raise
        shown = redact(str(response.request.url))
        if response.status_code in RETRY_STATUSES:
            if self.breaker:
                self.breaker.record(False)
            wait = _retry_after(response.headers.get("Retry-After"))
            raise _Retryable(response.status_code, wait, f"HTTP {response.status_code} from {shown}")
        if response.is_error:
            if self.breaker:
                self.breaker.record(False)
            raise ApiError(f"source '{self.name}': HTTP {response.status_code} {response.reason_phrase} from {shown}")
        if self.breaker:
            self.breaker.record(True)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"source '{self.name}': {shown} did not answer with JSON") from None
        links = {rel: str(response.url.join(link["url"])) for rel, link in response.links.items()}
        return body, links


def odata_records(body: Any) -> Any:
    """The entities of an OData response: v4 ``value``, v2 ``d.results`` (or ``d`` itself)."""
    if isinstance(body, dict) and "value" in body:
        return body["value"]
    inner = body.get("d") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        return inner.get("results", [inner])
    return inner


def odata_next(body: Any) -> str | None:
    """The next-page link of an OData response: v4 ``@odata.nextLink``, v2 ``d.__next``."""
    if not isinstance(body, dict):
        return None
    inner = body.get("d")
    return body.get("@odata.nextLink") or (inner.get("__next") if isinstance(inner, dict) else None)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def client_for(source, url: str, secret) -> ApiClient:
    """The client an ``api`` source declares; ``secret(text, where)`` resolves ${ENV} values (the
    credentials among them are registered for redaction)."""
    settings, auth_spec = source.api, source.authentication
    where = f"source '{source.source_name}'"
    headers = {k: named_secret(secret, k, v, f"{where} api.headers.{k}") for k, v in settings.headers.items()}
    params = {k: named_secret(secret, k, v, f"{where} api.params.{k}") for k, v in settings.params.items()}
    auth: httpx.Auth | None = None
    sticky: dict[str, Any] = {}
    if auth_spec and auth_spec.api_key:
        key = register(secret(auth_spec.api_key, f"{where} authentication.api_key"), f"{where} authentication.api_key")
        if settings.api_key_param:
            sticky[settings.api_key_param] = key
        elif settings.api_key_header:
            headers[settings.api_key_header] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
    elif auth_spec and auth_spec.username:
        password = register(secret(auth_spec.password or "", f"{where} authentication.password"), f"{where} authentication.password")
        auth = httpx.BasicAuth(secret(auth_spec.username, f"{where} authentication.username"), password)
    paging = settings.pagination
    if source.source_type == "odata":
        headers.setdefault("Accept", "application/json")
        paging = paging.model_copy(update={"type": "odata"})
    client = ApiClient(
        source.source_name, url, method=settings.method, params=params, headers=headers,
        body=settings.body, auth=auth, records_path=settings.records_path,
        pagination=Pagination(**paging.model_dump()),
        rate=TokenBucket(settings.requests_per_second, settings.burst) if settings.requests_per_second else None,
        breaker=CircuitBreaker(settings.circuit_breaker_failures, settings.circuit_breaker_reset_seconds),
        cache=ResponseCache(
            settings.cache_ttl_seconds,
            secret(settings.cache_redis_url, f"{where} api.cache_redis_url") if settings.cache_redis_url else None,
        ) if settings.cache_ttl_seconds else None,
        attempts=settings.attempts, backoff=settings.backoff_seconds, max_backoff=settings.max_backoff_seconds,
        timeout=settings.timeout_seconds, deadline_seconds=settings.deadline_seconds,
    )
    client.sticky = sticky
    return client
