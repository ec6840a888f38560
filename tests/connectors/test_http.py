"""REST sources against a real HTTP server on loopback: paging, auth, retries, limits, cache."""

import json
import time
import uuid

import pytest
from werkzeug import Request, Response

from memories_dagster.connectors.http import (
    ApiClient,
    ApiError,
    CircuitBreaker,
    Pagination,
    ResponseCache,
    TokenBucket,
    client_for,
)
from memories_dagster.specs.integration import DataSource
from tests.conftest import REDIS_URL, materialization_of

ROWS = [{"id": i, "main": {"temp": 20 + i}} for i in range(1, 8)]


def page_handler(request: Request) -> Response:
    page, size = int(request.args["page"]), int(request.args["per_page"])
    return Response(json.dumps({"data": ROWS[(page - 1) * size:page * size]}), content_type="application/json")


def test_page_pagination_stops_on_a_short_page(httpserver):
    httpserver.expect_request("/obs").respond_with_handler(page_handler)
    client = ApiClient("obs", httpserver.url_for("/obs"), records_path="data",
                       pagination=Pagination(type="page", size_param="per_page", page_size=3))
    assert [r["id"] for r in client.records()] == list(range(1, 8))
    assert client.requests == 3


def test_offset_cursor_and_link_pagination(httpserver):
    def offset(request):
        start, limit = int(request.args["offset"]), int(request.args["limit"])
        return Response(json.dumps(ROWS[start:start + limit]), content_type="application/json")

    def cursor(request):
        position = int(request.args.get("after", 0))
        following = position + 2 if position + 2 < len(ROWS) else None
        return Response(json.dumps({"items": ROWS[position:position + 2], "meta": {"next": following}}), content_type="application/json")

    def linked(request):
        position = int(request.args.get("from", 0))
        headers = {"Link": f'</linked?from={position + 3}>; rel="next"'} if position + 3 < len(ROWS) else {}
        return Response(json.dumps(ROWS[position:position + 3]), headers=headers, content_type="application/json")

    httpserver.expect_request("/offset").respond_with_handler(offset)
    httpserver.expect_request("/cursor").respond_with_handler(cursor)
    httpserver.expect_request("/linked").respond_with_handler(linked)
    by_offset = ApiClient("o", httpserver.url_for("/offset"), pagination=Pagination(type="offset", page_size=3))
    by_cursor = ApiClient("c", httpserver.url_for("/cursor"), records_path="items",
                          pagination=Pagination(type="cursor", cursor_param="after", cursor_path="meta.next"))
    by_link = ApiClient("l", httpserver.url_for("/linked"), pagination=Pagination(type="link"))
    for client in (by_offset, by_cursor, by_link):
        assert [r["id"] for r in client.records()] == list(range(1, 8)), client.name


@pytest.mark.parametrize(
    "authentication, api, expect",
    [
        ({"api_key": "k-1234567"}, {}, ("header", "Authorization", "Bearer k-1234567")),
        ({"api_key": "k-1234567"}, {"api_key_header": "X-API-Key"}, ("header", "X-API-Key", "k-1234567")),
        ({"api_key": "k-1234567"}, {"api_key_param": "appid"}, ("query", "appid", "k-1234567")),
        ({"username": "ann", "password": "pw-secret-1"}, {}, ("header", "Authorization", "Basic YW5uOnB3LXNlY3JldC0x")),
    ],
)
def test_authentication_schemes(httpserver, authentication, api, expect):
    seen = {}

    def record(request):
        seen.update(headers={k.lower(): v for k, v in request.headers.items()}, query=dict(request.args))
        return Response("[]", content_type="application/json")

    httpserver.expect_request("/auth").respond_with_handler(record)
    source = DataSource(source_name="s", source_type="api", connection_string="x", authentication=authentication, api=api)
    list(client_for(source, httpserver.url_for("/auth"), lambda text, where: text).records())
    where, name, value = expect
    assert (seen["headers"].get(name.lower()) if where == "header" else seen["query"].get(name)) == value


def test_429_with_retry_after_is_waited_for(httpserver):
    calls = []

    def limited(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        return Response("[{\"id\": 1}]", content_type="application/json")

    httpserver.expect_request("/limited").respond_with_handler(limited)
    client = ApiClient("s", httpserver.url_for("/limited"), backoff=0.01, max_backoff=2)  # Retry-After (1 s) wins over backoff
    assert list(client.records()) == [{"id": 1}]
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95


def test_server_errors_are_retried_with_backoff_then_reported(httpserver):
    calls = []

    def flaky(request):
        calls.append(time.monotonic())
        return Response("boom", status=500) if len(calls) < 3 else Response("[]", content_type="application/json")

    httpserver.expect_request("/flaky").respond_with_handler(flaky)
    assert list(ApiClient("s", httpserver.url_for("/flaky"), backoff=0.1).records()) == []
    assert len(calls) == 3 and calls[2] - calls[1] >= 0.19  # 0.1 s, then 0.2 s
    httpserver.expect_request("/down").respond_with_data("boom", status=503)
    with pytest.raises(ApiError, match=r"source 's': HTTP 503 from http://.*/down \(after 2 attempts\)"):
        list(ApiClient("s", httpserver.url_for("/down"), attempts=2, backoff=0.01).records())


def test_rate_limit_is_kept(httpserver):
    httpserver.expect_request("/fast").respond_with_json([])
    client = ApiClient("s", httpserver.url_for("/fast"), rate=TokenBucket(rate=10, burst=1))
    started = time.monotonic()
    for number in range(21):
        client.fetch(httpserver.url_for("/fast"), {"n": number})
    elapsed = time.monotonic() - started
    measured = 20 / elapsed  # the first request uses the burst token
    print(f"rate limit 10/s, measured {measured:.2f} requests/s over 21 requests")
    assert 9.0 <= measured <= 10.3


def test_circuit_breaker_opens_after_consecutive_failures(httpserver):
    httpserver.expect_request("/broken").respond_with_data("no", status=500)
    breaker = CircuitBreaker(failures=3, reset_seconds=60)
    client = ApiClient("s", httpserver.url_for("/broken"), breaker=breaker, attempts=1)
    for _ in range(3):
        with pytest.raises(ApiError, match="HTTP 500"):
            client.fetch(httpserver.url_for("/broken"), {})
    assert breaker.is_open
    requests_before = client.requests
    with pytest.raises(ApiError, match="circuit open for http://.*/broken: 3 consecutive failures"):
        client.fetch(httpserver.url_for("/broken"), {})
    assert client.requests == requests_before


def test_slow_responses_time_out_and_are_retried(httpserver):
    def slow(request):
        time.sleep(0.5)
        return Response("[]", content_type="application/json")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(ApiError, match=r"cannot reach http://.*/slow: .*\(after 2 attempts\)"):
        ApiClient("s", httpserver.url_for("/slow"), timeout=0.1, attempts=2, backoff=0.01).fetch(httpserver.url_for("/slow"), {})


def test_memory_cache_hits_and_expires(httpserver):
    httpserver.expect_request("/cached").respond_with_json([{"id": 1}])
    cache = ResponseCache(ttl=0.3)
    client = ApiClient("s", httpserver.url_for("/cached"), cache=cache)
    for _ in range(2):
        assert list(client.records()) == [{"id": 1}]
    assert (client.requests, cache.hits, cache.misses) == (1, 1, 1)
    time.sleep(0.35)
    list(client.records())
    assert client.requests == 2


def test_redis_cache_is_shared_between_runs(httpserver):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes "
                    "--bind 127.0.0.1 --port 6379 --save '' --appendonly no", pytrace=False)
    path = f"/shared-{uuid.uuid4().hex[:8]}"
    httpserver.expect_request(path).respond_with_json([{"id": 2}])
    first = ApiClient("s", httpserver.url_for(path), cache=ResponseCache(ttl=30, redis_url=REDIS_URL))
    second = ApiClient("s", httpserver.url_for(path), cache=ResponseCache(ttl=30, redis_url=REDIS_URL))
    assert list(first.records()) == list(second.records()) == [{"id": 2}]
    assert (first.requests, second.requests, second.cache.hits) == (1, 0, 1)


@pytest.mark.parametrize("key", ["very-secret-key", "abc+def/ghi=="])  # the second needs URL-encoding
def test_a_404_names_the_source_and_hides_the_key(httpserver, monkeypatch, key):
    from memories_dagster.secrets import resolve

    monkeypatch.setenv("WEATHER_KEY", key)
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    source = DataSource(source_name="weather", source_type="api", connection_string="x",
                        authentication={"api_key": "${WEATHER_KEY}"}, api={"api_key_param": "appid"})
    with pytest.raises(ApiError) as caught:
        list(client_for(source, httpserver.url_for("/missing"), resolve).records())
    assert "source 'weather': HTTP 404 NOT FOUND from http://" in str(caught.value)
    assert key[:3] not in str(caught.value) and "appid=***" in str(caught.value)


def test_an_api_source_declared_in_yaml_materializes_through_dagster(httpserver, tmp_path, materialize_spec):
    import pandas as pd

    httpserver.expect_request("/v1/forecast").respond_with_handler(page_handler)
    result = materialize_spec("weather", {
        "integration_config": {"data_sources": [{
            "source_name": "observations", "source_type": "api",
            "connection_string": httpserver.url_for("/v1/forecast"),
            "api": {"records_path": "data", "requests_per_second": 20, "cache_ttl_seconds": 60,
                    "pagination": {"type": "page", "size_param": "per_page", "page_size": 5}}}],
            "transformation_rules": [{"rule_name": "f", "transformation_type": "calculation",
                                      "target_column": "temp_f", "transformation_logic": "main_temp * 9 / 5 + 32"}]},
        "output_config": {"output_format": "csv", "output_destination": "output/weather.csv"},
    })
    assert result.success
    frame = pd.read_csv(tmp_path / "output" / "weather.csv").sort_values("id")
    assert frame["temp_f"].tolist() == [(20 + i) * 9 / 5 + 32 for i in range(1, 8)]
    source = materialization_of(result, "weather", "sources", "observations")
    assert source.metadata["requests"].value == 2 and source.metadata["dagster/row_count"].value == 7


def test_odata_v4_next_links_and_v2_client_paging(httpserver):
    people = [{"UserName": f"u{i}", "Age": 20 + i} for i in range(5)]

    def v4(request):
        start = int(request.args.get("$skiptoken", 0))
        body = {"@odata.context": "$metadata#People", "value": people[start:start + 2]}
        if start + 2 < len(people):
            body["@odata.nextLink"] = f"People?$skiptoken={start + 2}"
        return Response(json.dumps(body), content_type="application/json")

    def v2(request):
        assert request.headers["Accept"] == "application/json"
        skip, top = int(request.args["$skip"]), int(request.args["$top"])
        return Response(json.dumps({"d": {"results": people[skip:skip + top]}}), content_type="application/json")

    httpserver.expect_request("/v4/People").respond_with_handler(v4)
    httpserver.expect_request("/sap/opu/odata/sap/API_BP/A_BusinessPartner").respond_with_handler(v2)
    for path in ("/v4/People", "/sap/opu/odata/sap/API_BP/A_BusinessPartner"):
        source = DataSource(source_name="bp", source_type="odata", connection_string="x",
                            api={"params": {"$select": "UserName,Age"}, "pagination": {"page_size": 2}})
        client = client_for(source, httpserver.url_for(path), lambda text, where: text)
        assert [r["UserName"] for r in client.records()] == [f"u{i}" for i in range(5)], path
        assert client.requests == 3


def test_an_api_with_no_records_gives_an_empty_table_where_allowed(httpserver, tmp_path):
    from memories_dagster.connectors.files import ConnectorError
    from memories_dagster.engine.extract import NO_RECORDS_COLUMN, extract

    httpserver.expect_request("/empty").respond_with_json([])
    source = DataSource(source_name="s", source_type="api", connection_string=httpserver.url_for("/empty"))
    with pytest.raises(ConnectorError, match="source 's' has no rows .*allow_empty: true"):
        extract(source, source.connection_string, str(tmp_path / "o.parquet"))
    allowed = source.model_copy(update={"allow_empty": True})
    table = extract(allowed, source.connection_string, str(tmp_path / "o.parquet"))
    assert table.rows == 0 and list(table.columns) == [NO_RECORDS_COLUMN]


def test_an_odata_source_materializes_through_dagster(httpserver, tmp_path, materialize_spec):
    import pandas as pd

    partners = [{"BusinessPartner": str(i), "Name": f"p{i}"} for i in range(3)]
    httpserver.expect_request("/A_BusinessPartner").respond_with_json({"d": {"results": partners}})
    result = materialize_spec("partners", {
        "integration_config": {"data_sources": [{"source_name": "bp", "source_type": "odata",
                                                 "connection_string": httpserver.url_for("/A_BusinessPartner")}]},
        "output_config": {"output_format": "csv", "output_destination": "output/bp.csv"},
    })
    assert result.success
    assert sorted(pd.read_csv(tmp_path / "output" / "bp.csv")["Name"]) == ["p0", "p1", "p2"]


def test_the_cache_tells_post_bodies_apart(httpserver):
    httpserver.expect_request("/search", method="POST").respond_with_handler(
        lambda request: Response(json.dumps([json.loads(request.data)]), content_type="application/json"))
    cache = ResponseCache(ttl=60)
    berlin = ApiClient("s", httpserver.url_for("/search"), method="POST", body={"city": "Berlin"}, cache=cache)
    paris = ApiClient("s", httpserver.url_for("/search"), method="POST", body={"city": "Paris"}, cache=cache)
    assert list(berlin.records()) == [{"city": "Berlin"}] and list(paris.records()) == [{"city": "Paris"}]


def test_a_cache_that_is_down_is_read_around(httpserver):
    httpserver.expect_request("/data").respond_with_json([{"id": 1}])
    client = ApiClient("s", httpserver.url_for("/data"), cache=ResponseCache(ttl=60, redis_url="redis://127.0.0.1:1/0"))
    assert list(client.records()) == [{"id": 1}] and client.cache.unavailable


def test_a_wrong_records_path_is_an_error_and_keys_follow_next_links(httpserver):
    httpserver.expect_request("/wrapped").respond_with_json({"items": []})
    with pytest.raises(ApiError, match="records_path 'data' is not in the response of .*; its top-level keys: items"):
        list(ApiClient("s", httpserver.url_for("/wrapped"), records_path="data").records())

    def linked(request):
        assert request.args["appid"] == "k-1234567"  # on the next link's page too
        if request.args.get("p") == "2":
            return Response("[{\"id\": 2}]", content_type="application/json")
        return Response("[{\"id\": 1}]", headers={"Link": '</paged?p=2>; rel="next"'}, content_type="application/json")

    httpserver.expect_request("/paged").respond_with_handler(linked)
    source = DataSource(source_name="s", source_type="api", connection_string="x", authentication={"api_key": "k-1234567"},
                        api={"api_key_param": "appid", "pagination": {"type": "link"}})
    assert [r["id"] for r in client_for(source, httpserver.url_for("/paged"), lambda text, where: text).records()] == [1, 2]
