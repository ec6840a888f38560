"""GraphQL APIs as sources through gql: one query, followed page by page with Relay cursors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.connectors.http import dig
from memories_dagster.secrets import redact


def graphql_records(source, url: str, secret) -> Iterator[dict[str, Any]]:
    """Every record the source's query returns, following ``pageInfo.endCursor`` while
    ``hasNextPage``; ``secret(text, where)`` resolves ${ENV} values."""
    from gql import Client, gql
    from gql.transport.exceptions import TransportError, TransportQueryError
    from gql.transport.httpx import HTTPXTransport
    from graphql import GraphQLError

    settings, where = source.graphql, f"source '{source.source_name}'"
    headers = {k: secret(v, f"{where} graphql.headers.{k}") for k, v in settings.headers.items()}
    auth = source.authentication
    if auth and auth.api_key:
        headers["Authorization"] = f"Bearer {secret(auth.api_key, f'{where} authentication.api_key')}"
    try:
        document = gql(settings.query)
    except GraphQLError as exc:
        raise ConnectorError(f"{where}: graphql.query does not parse: {exc.message}") from None
    transport = HTTPXTransport(url=url, headers=headers, timeout=settings.timeout_seconds)
    variables = dict(settings.variables)
    try:
        with Client(transport=transport, fetch_schema_from_transport=False) as session:
            for _ in range(settings.max_pages):
                data = session.execute(document, variable_values=variables)
                page = dig(data, settings.records_path)
                if page is None:
                    raise ConnectorError(
                        f"{where}: graphql.records_path '{settings.records_path}' is not in the response's data; "
                        f"its top-level fields: {', '.join(data) if isinstance(data, dict) else 'none'}"
                    )
                for record in page:
                    node = record.get(settings.node_key) if settings.node_key and isinstance(record, dict) else record
                    yield node
                info = dig(data, settings.page_info_path) if settings.page_info_path else None
                if not info or not info.get("hasNextPage") or not info.get("endCursor"):
                    return
                variables[settings.cursor_variable] = info["endCursor"]
            raise ConnectorError(f"{where}: more than {settings.max_pages} pages; raise graphql.max_pages")
    except TransportQueryError as exc:
        raise ConnectorError(redact(f"{where}: the GraphQL server answered with errors: {exc.errors or exc}")) from None
    except (TransportError, OSError) as exc:
        raise ConnectorError(redact(f"{where}: cannot query {url}: {exc}")) from None
