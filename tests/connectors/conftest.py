"""Servers that misbehave on purpose, and the SQL databases, shared by the connector tests."""

import socket
import threading
import time

import pytest
import sqlalchemy as sa

BODY = b'[{"id": 1}]'


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def database(request, tmp_path):
    """The real PostgreSQL and MariaDB, and a SQLite file of the test's own."""
    if request.param == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return request.getfixturevalue(request.param)


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
