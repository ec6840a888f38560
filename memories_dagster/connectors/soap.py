"""SOAP services as sources through zeep: one operation of a WSDL, its result as records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from memories_dagster.connectors.deadlines import deadline_session
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.connectors.http import dig
from memories_dagster.secrets import named_secret, redact, register


def soap_records(source, wsdl: str, secret) -> Iterator[dict[str, Any]]:
    """The records of the source's SOAP call; ``secret(text, where)`` resolves ${ENV} values."""
    import requests
    import zeep
    import zeep.exceptions
    import zeep.helpers
    from zeep.transports import Transport

    settings, where = source.soap, f"source '{source.source_name}'"
    session = deadline_session(settings.timeout_seconds)  # each answer in full, however it trickles
    auth = source.authentication
    if auth and auth.username:
        session.auth = (secret(auth.username, f"{where} authentication.username"),
                        register(secret(auth.password or "", f"{where} authentication.password"), f"{where} authentication.password"))
    arguments = {k: named_secret(secret, k, v, f"{where} soap.arguments.{k}") for k, v in settings.arguments.items()}
    try:
        client = zeep.Client(wsdl, transport=Transport(session=session, timeout=settings.timeout_seconds,
                                                       operation_timeout=settings.timeout_seconds))
        service = client.bind(settings.service, settings.port) if settings.service else client.service
        try:
            operation = getattr(service, settings.operation)
        except AttributeError:
            raise ConnectorError(f"{where}: the WSDL has no operation '{settings.operation}'") from None
        result = zeep.helpers.serialize_object(operation(**arguments), dict)
    except zeep.exceptions.Fault as exc:
        raise ConnectorError(redact(f"{where}: the service answered with a SOAP fault: {exc.message}")) from None
    except (zeep.exceptions.Error, requests.RequestException, OSError) as exc:
        status = getattr(exc, "status_code", None) or 0
        lost = isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)) or status >= 500 or status == 429
        raise (UnavailableError if lost else ConnectorError)(
            redact(f"{where}: calling {settings.operation} of {wsdl} failed: {exc}")) from exc
    # zeep unwraps a response whose only member is the repeated element: then it is the records
    records = dig(result, settings.records_path) if settings.records_path and isinstance(result, dict) else result
    if records is None:
        return
    for record in records if isinstance(records, list) else [records]:
        yield record if isinstance(record, dict) else {"value": record}
