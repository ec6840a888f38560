"""GraphQL sources against a real HTTP server on loopback answering like a GraphQL server."""

import json

import pandas as pd
import pytest
from werkzeug import Request, Response

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.connectors.graphql import graphql_records
from memories_dagster.specs.integration import DataSource

ORDERS = [{"id": str(i), "total": 10.0 * i, "customer": {"name": f"c{i}"}} for i in range(1, 6)]
QUERY = """query Orders($after: String) {
  orders(first: 2, after: $after) { edges { node { id total customer { name } } } pageInfo { hasNextPage endCursor } }
}"""


def server(request: Request) -> Response:
    payload = json.loads(request.data)
    if "broken" in payload["query"]:
        return Response(json.dumps({"errors": [{"message": "Cannot query field 'broken'"}]}), content_type="application/json")
    assert request.headers.get("Authorization") == "Bearer tok-12345"
    start = int((payload.get("variables") or {}).get("after") or 0)
    edges = [{"node": o} for o in ORDERS[start:start + 2]]
    info = {"hasNextPage": start + 2 < len(ORDERS), "endCursor": str(start + 2)}
    return Response(json.dumps({"data": {"orders": {"edges": edges, "pageInfo": info}}}), content_type="application/json")


def source(query=QUERY) -> DataSource:
    return DataSource(source_name="shop", source_type="graphql", connection_string="x", authentication={"api_key": "tok-12345"},
                      graphql={"query": query, "records_path": "orders.edges", "node_key": "node",
                               "page_info_path": "orders.pageInfo", "cursor_variable": "after"})


def test_cursor_pagination_reads_every_node(httpserver):
    httpserver.expect_request("/graphql", method="POST").respond_with_handler(server)
    records = list(graphql_records(source(), httpserver.url_for("/graphql"), lambda text, where: text))
    assert [r["id"] for r in records] == ["1", "2", "3", "4", "5"]
    assert records[0]["customer"] == {"name": "c1"}


def test_graphql_errors_and_bad_queries_are_named(httpserver):
    httpserver.expect_request("/graphql", method="POST").respond_with_handler(server)
    with pytest.raises(ConnectorError, match="source 'shop': the GraphQL server answered with errors: .*Cannot query field 'broken'"):
        list(graphql_records(source("query { broken }"), httpserver.url_for("/graphql"), lambda text, where: text))
    with pytest.raises(ConnectorError, match="source 'shop': graphql.query does not parse"):
        list(graphql_records(source("query {"), httpserver.url_for("/graphql"), lambda text, where: text))


def test_a_graphql_source_materializes_through_dagster(httpserver, tmp_path, materialize_spec, monkeypatch):
    httpserver.expect_request("/graphql", method="POST").respond_with_handler(server)
    monkeypatch.setenv("SHOP_TOKEN", "tok-12345")
    result = materialize_spec("shop", {
        "integration_config": {"data_sources": [{
            "source_name": "orders", "source_type": "graphql", "connection_string": httpserver.url_for("/graphql"),
            "authentication": {"api_key": "${SHOP_TOKEN}"},
            "graphql": {"query": QUERY, "records_path": "orders.edges", "node_key": "node",
                        "page_info_path": "orders.pageInfo"}}]},
        "output_config": {"output_format": "parquet", "output_destination": "output/orders.parquet"},
    })
    assert result.success
    frame = pd.read_parquet(tmp_path / "output" / "orders.parquet").sort_values("id")
    assert frame["customer_name"].tolist() == ["c1", "c2", "c3", "c4", "c5"]
