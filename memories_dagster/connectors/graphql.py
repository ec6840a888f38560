"""GraphQL APIs as sources through gql: one query, followed page by page with Relay cursors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from memories_dagster.connectors.deadlines import DeadlineTransport, deadline
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.connectors.http import dig
from memories_dagster.secrets import named_secret, redact, register


def graphql_records(source, url: str, secret) -> Iterator[dict[str, Any]]:
    """Every record the source's query returns, following ``pageInfo.endCursor`` while
    ``hasNextPage``; ``secret(text, where)`` resolves ${ENV} values."""
    from gql import Client, gql
    from gql.transport.exceptions import TransportConnectionFailed, TransportError, TransportQueryError, TransportServerError
    from gql.transport.httpx import HTTPXTransport
    from graphql import GraphQLError

    settings, where = source.graphql, f"source '{source.source_name}'"
    headers = {k: named_secret(secret, k, v, f"{where} graphql.headers.{k}") for k, v in settings.headers.items()}
    auth = source.authentication
    if auth and auth.api_key:
        key = f"{where} authentication.api_key"
        headers["Authorization"] = f"Bearer {register(secret(auth.api_key, key), key)}"
    try:
        document = gql(settings.query)
    except GraphQLError as exc:
        raise ConnectorError(f"{where}: graphql.query does not parse: {exc.message}") from None
    transport = HTTPXTransport(url=url, headers=headers, timeout=settings.timeout_seconds, transport=DeadlineTransport())
    variables = dict(settings.variables)
    try:
        with Client(transport=transport, fetch_schema_from_transport=False) as session:
            for _ in range(settings.max_pages):
                with deadline(settings.timeout_seconds):  # the whole answer, however slowly it trickles
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
    except (TransportError, OSError, httpx.TransportError) as exc:
        status = getattr(exc, "code", None) or 0
        lost = isinstance(exc, (TransportConnectionFailed, OSError, httpx.TransportError)) or \
            (isinstance(exc, TransportServerError) and (status >= 500 or status == 429))
        raise (UnavailableError if lost else ConnectorError)(redact(f"{where}: cannot query {url}: {exc}")) from exc
