"""Every request ends by its deadline, however slowly the server answers, and no wait outlasts
max_backoff_seconds. The servers are raw sockets on loopback that trickle their bytes."""

import socket
import threading
import time

import pytest
from werkzeug import Response

from memories_dagster.connectors.http import ApiClient, ApiUnavailableError, client_for
from memories_dagster.specs.integration import DataSource

BODY = b'[{"id": 1}]'


@pytest.fixture
def trickling_server():
    """A server answering every request one byte every 0.3 s (for at most 12 s): headers
    included (``where='headers'``) or only the body (``where='body'``)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve(where: str) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn, where), daemon=True).start()

    def answer(conn: socket.socket, where: str) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
        payload = BODY + b" " * (40 - len(BODY))
        with conn:
            conn.recv(65536)
            if where == "body":
                conn.sendall(head)
            started = time.monotonic()
            for byte in (payload if where == "body" else head + payload):
                if stop.is_set() or time.monotonic() - started > 12:
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    def start(where: str) -> str:
        threading.Thread(target=serve, args=(where,), daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/slow"

    yield start
    stop.set()
    listener.close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_answer_ends_at_the_request_deadline(trickling_server, where):
    client = ApiClient("slow", trickling_server(where), attempts=2, backoff=0.1, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ApiUnavailableError, match=r"source 'slow': cannot reach .*deadline of 1 s.*after 2 attempts"):
        list(client.records())
    assert time.monotonic() - started < 2 * 1.0 + 0.1 + 1.0  # two deadlines, one backoff, slack


def test_a_source_deadline_bounds_every_page_and_retry(trickling_server):
    client = ApiClient("slow", trickling_server("body"), attempts=20, backoff=0.1, timeout=1.0, deadline_seconds=2.5)
    started = time.monotonic()
    with pytest.raises(ApiUnavailableError, match=r"api.deadline_seconds \(2.5 s\)|deadline of"):
        list(client.records())
    assert time.monotonic() - started < 2.5 + 1.0


def test_retry_after_is_capped_by_max_backoff(httpserver):
    calls = []

    def limited(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Response("slow down", status=429, headers={"Retry-After": "100000"})
        return Response('[{"id": 1}]', content_type="application/json")

    httpserver.expect_request("/limited").respond_with_handler(limited)
    source = DataSource(source_name="s", source_type="api", connection_string="x", api={"max_backoff_seconds": 0.5})
    client = client_for(source, httpserver.url_for("/limited"), lambda text, where: text)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(list(client.records())), daemon=True)
    worker.start()
    worker.join(timeout=10)  # the uncapped wait would sleep 100000 s
    assert done == [[{"id": 1}]] and 0.45 <= calls[1] - calls[0] < 2
