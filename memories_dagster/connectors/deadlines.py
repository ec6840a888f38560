"""Deadlines for network reads: a server that trickles its answer still cannot hold a run.

Client timeouts (httpx's, requests') bound each socket operation, so a server that sends one
byte every two seconds never trips a three-second timeout and a request can last for ever.
Inside :func:`deadline` every connect, read and write of a :class:`DeadlineTransport` gets only
the time left until the deadline, and fails with a timeout once it has passed. Clients built on
requests (zeep, pystac-client) get the same bound from a :class:`DeadlineAdapter` mounted on
their session.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("memories_network_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Everything inside must finish within ``seconds`` (an enclosing, earlier deadline wins)."""
    end = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(outer if outer is not None and outer[0] <= end else (end, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left(timeout: float | None, error: type[Exception] = httpcore.ReadTimeout) -> float | None:
    """``timeout`` shortened to the time left before the deadline; ``error`` once it has passed."""
    current = _DEADLINE.get()
    if current is None:
        return timeout
    left = current[0] - time.monotonic()
    if left <= 0:
        raise error(f"no complete answer within the deadline of {current[1]:g} s")
    return left if timeout is None else min(timeout, left)


def _within(operation: Any, timeout: float | None, error: type[Exception]) -> Any:
    """Run ``operation(timeout)`` with the time left; a timeout the deadline caused says so."""
    try:
        return operation(time_left(timeout, error))
    except error:
        time_left(timeout, error)
        raise


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within(lambda left: self._stream.read(max_bytes, left), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within(lambda left: self._stream.write(buffer, left), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> _Stream:
        return _Stream(_within(lambda left: self._stream.start_tls(ssl_context, server_hostname, left), timeout,
                               httpcore.ConnectTimeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> _Stream:
        return _Stream(_within(lambda left: self._backend.connect_tcp(host, port, left, local_address, socket_options),
                               timeout, httpcore.ConnectTimeout))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> _Stream:
        return _Stream(_within(lambda left: self._backend.connect_unix_socket(path, left, socket_options), timeout,
                               httpcore.ConnectTimeout))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport whose socket operations honour :func:`deadline`."""

    def __init__(self, verify: Any = True, limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)) -> None:
        super().__init__(verify=verify, limits=limits)
        # httpx offers no way to hand its connection pool a network backend, so the pool is
        # built again, as httpx builds it, with one
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )


_WATCHED: ContextVar[list | None] = ContextVar("memories_watched_connections", default=None)


class _Watched:
    """A urllib3 connection that, inside :meth:`DeadlineAdapter.send`, lets the adapter see it."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watched = _WATCHED.get()
        if watched is not None:
            watched.append(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = type("WatchedHTTPConnection", (_Watched, HTTPConnection), {})


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = type("WatchedHTTPSConnection", (_Watched, HTTPSConnection), {})


def _cut(connections: list) -> None:
    """Wake every read blocked on ``connections``: their sockets are shut down."""
    for connection in connections:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass  # not connected yet, or closed already


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter for which each answer, headers and body, must arrive within ``seconds``.

    requests bounds each socket operation only, so a server sending a byte a second holds a
    request for ever. Here a timer shuts the request's socket down when the deadline passes:
    the blocked read wakes, and the request fails with a timeout that says so.
    """

    def __init__(self, seconds: float, **kwargs: Any) -> None:
        self.seconds = seconds
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             **kwargs: Any) -> requests.Response:
        watched: list = []
        token = _WATCHED.set(watched)
        timer = threading.Timer(self.seconds, _cut, args=(watched,))
        timer.daemon = True
        ends = time.monotonic() + self.seconds
        timer.start()
        try:
            response = super().send(request, stream=True, timeout=timeout, **kwargs)
            response.content  # the whole body, inside the deadline
            return response
        except (requests.RequestException, OSError):
            if time.monotonic() >= ends:
                raise requests.ReadTimeout(f"no complete answer within the deadline of {self.seconds:g} s") from None
            raise
        finally:
            timer.cancel()
            _WATCHED.reset(token)


def deadline_session(seconds: float, session: requests.Session | None = None, **adapter: Any) -> requests.Session:
    """``session`` (or a new one) whose http and https answers each end within ``seconds``."""
    session = session or requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, DeadlineAdapter(seconds, **adapter))
    return session
