"""Every request ends by its deadline, however slowly the server answers, and no wait outlasts
max_backoff_seconds. The servers are raw sockets on loopback that trickle their bytes."""

import threading
import time

import pytest
from werkzeug import Response

from memories_dagster.connectors.http import ApiClient, ApiUnavailableError, client_for
from memories_dagster.specs.integration import DataSource

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


@pytest.mark.parametrize("where", ["headers", "body"])
def test_clients_on_requests_end_a_trickling_answer_at_the_deadline(trickling_server, where):
    import requests

    from memories_dagster.connectors.deadlines import deadline_session

    url = trickling_server(where)
    started = time.monotonic()
    with pytest.raises(requests.Timeout, match="deadline of 1 s"):
        deadline_session(1.0).get(url, timeout=1.0)
    assert time.monotonic() - started < 1.0 + 1.0 + 0.5  # the deadline, at most one socket wait, slack


def test_a_session_with_a_deadline_reads_what_plain_requests_reads(httpserver):
    import gzip

    import requests

    from memories_dagster.connectors.deadlines import deadline_session

    body = b"x" * 300_000
    httpserver.expect_request("/gz").respond_with_data(gzip.compress(body), headers={"Content-Encoding": "gzip"})
    httpserver.expect_request("/chunked").respond_with_handler(lambda request: Response(iter([b"a" * 70_000, b"b" * 5])))
    for path in ("/gz", "/chunked"):
        plain = requests.get(httpserver.url_for(path), timeout=5)
        bounded = deadline_session(5.0).get(httpserver.url_for(path), timeout=5)
        assert bounded.status_code == plain.status_code == 200 and bounded.content == plain.content
    assert len(bounded.content) == 70_005 and deadline_session(5.0).get(httpserver.url_for("/gz")).content == body


def test_soap_and_stac_sources_end_a_trickling_answer_at_their_deadline(trickling_server):
    from memories_dagster.connectors.files import UnavailableError
    from memories_dagster.connectors.soap import soap_records
    from memories_dagster.connectors.stac import StacError, search_scenes

    url = trickling_server("body")
    source = DataSource(source_name="erp", source_type="soap", connection_string="x",
                        soap={"operation": "Get", "timeout_seconds": 1})
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="deadline of 1 s"):
        list(soap_records(source, url, lambda text, where: text))
    assert time.monotonic() - started < 2.5
    started = time.monotonic()
    with pytest.raises((StacError, UnavailableError)):
        search_scenes(url, "sentinel-2-l2a", (0, 0, 1, 1), "2024-01-01", "2024-01-02", timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_a_raster_behind_a_trickling_server_ends_at_gdals_deadline(trickling_server, monkeypatch):
    import rasterio.errors

    from memories_dagster.engine.earth import grid

    monkeypatch.setattr(grid, "HTTP_TIMEOUT", 1)
    monkeypatch.setattr(grid, "HTTP_RETRIES", 0)
    started = time.monotonic()
    with pytest.raises(rasterio.errors.RasterioIOError):
        grid.read_raster(trickling_server("headers") + ".tif")
    assert time.monotonic() - started < 4  # GDAL asks twice (1 s each); unbounded: until the server stops, 12 s
