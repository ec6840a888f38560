"""Connections of the resource profile as used by a pipeline: checked names, and engine access."""

from typing import Any

from memories_dagster.engine.tables import Access
from memories_dagster.secrets import is_credential_name, register, resolve
from memories_dagster.specs.loading import LoadedSpec
from memories_dagster.specs.profile import is_gcs_token

STORAGE_TYPES = ("s3", "gcs", "adls2")


def used_connections(loaded: LoadedSpec, known: dict[str, Any]) -> set[str]:
    """Names of the profile connections a spec uses; an unknown or unfit one is an error."""
    spec = loaded.spec
    uses = [(s.connection, s.source_type, f"source '{s.source_name}'") for s in spec.integration_config.data_sources]
    uses.append((spec.output_config.connection, spec.output_config.output_format, "output_config"))
    names = set()
    for name, kind, where in uses:
        if name is not None:
            check_connection(known, name, ("sql",) if kind == "sql" else STORAGE_TYPES, where, kind)
            names.add(name)
    return names


def check_connection(known: dict[str, Any], name: str, wanted: tuple[str, ...], where: str, kind: str | None = None) -> None:
    """An error unless the resource profile has connection ``name`` of one of the ``wanted`` types."""
    if name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ValueError(f"{where} names connection '{name}', which the resource profile does not have (it has: {listed})")
    if known[name].type not in wanted:
        raise ValueError(
            f"{where}{f' ({kind})' if kind else ''} names connection '{name}' of type {known[name].type}; "
            f"it needs one of type {' or '.join(wanted)}"
        )


def resource_keys(connection: Any, name: str | None) -> set[str]:
    """Resources an asset needs for a connection: the SQL database resource, by its name."""
    return {name} if connection is not None and name and connection.type == "sql" else set()


def access_of(connection: Any, name: str, resources: Any = None) -> tuple[Access, str | None]:
    """How the engine reaches a connection (``${ENV}`` read now), and a SQL connection's URL.

    A SQL connection comes from its Dagster resource (``resources.<name>``), object stores from
    their declaration.
    """
    if connection is None:
        return Access(), None
    if connection.type == "sql":
        database = getattr(resources, name)
        return Access(engine_options=database.engine_options()), resolve(database.url, f"connection '{name}' url")
    values = {k: _resolved(name, k, v) for k, v in connection.model_dump(exclude={"type"}).items() if v is not None}
    return Access(storage_options=_storage_options(connection.type, values)), None


def _resolved(connection: str, field: str, value: Any) -> Any:
    """A declared value with ${ENV} read; a key, secret or token is a credential whatever it resolves to."""
    if not isinstance(value, str):
        return value
    where = f"connection '{connection}' {field}"
    resolved = resolve(value, where)
    if is_credential_name(field) and (field != "token" or is_gcs_token(resolved)):
        register(resolved, where)
    return resolved


def _storage_options(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """fsspec options (s3fs, gcsfs, adlfs) from a connection's declared values."""
    if kind == "s3":
        options: dict[str, Any] = {}
        if "aws_access_key_id" in values:
            options.update(key=values["aws_access_key_id"], secret=values.get("aws_secret_access_key"))
        if "aws_session_token" in values:
            options["token"] = values["aws_session_token"]
        if "endpoint_url" in values:
            options["endpoint_url"] = values["endpoint_url"]
        if "region_name" in values:
            options["client_kwargs"] = {"region_name": values["region_name"]}
        if "profile_name" in values:
            options["profile"] = values["profile_name"]
        if values.get("use_unsigned_session"):
            options["anon"] = True
        return options
    if kind == "gcs":
        return {k: values[k] for k in ("project", "endpoint_url", "token") if k in values}
    if "connection_string" in values:
        return {"connection_string": values["connection_string"]}
    options = {"account_name": values["storage_account"]}
    for key in ("account_key", "sas_token"):
        if key in values:
            options[key] = values[key]
    return options
