"""Pydantic models of an integration spec: seed 003's input schema plus our extensions.

Every model forbids unknown keys so that a typo (``joinkeys``) is an error, not a silent default.
Expressions and value maps are parsed here, at load time, so a broken rule is reported with its
field path before anything runs.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from memories_dagster.engine.expressions import ExpressionError, parse_expression
from memories_dagster.specs.credentials import Address, Credential, Headers, NamedValues
from memories_dagster.specs.cron import cron_problem
from memories_dagster.specs.documents import DocumentError, parse_json
from memories_dagster.engine.formats import FormatError, parse_format
from memories_dagster.engine.layers import MAX_LAYERS, rule_past_layer_limit
from memories_dagster.engine.window import PLAIN_NAME, leaves_folder

COLUMN_TYPES = ("string", "integer", "float", "decimal", "boolean", "date", "timestamp")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]")


def asset_name(text: str) -> str:
    """Turn a free-form name into one Dagster accepts in asset keys and group names."""
    name = _NAME_CHARS.sub("_", text.strip())
    return name if name and not name[0].isdigit() else f"_{name}"


class Strict(BaseModel):
    """Base of every declaration model: unknown keys are errors; errors never repeat a value,
    which may be a credential."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


class Authentication(Strict):
    """Credentials of a source; values may be ``${ENV_VAR}`` references."""

    username: str | None = None
    password: Credential | None = None
    api_key: Credential | None = None


class PaginationSpec(Strict):
    """How an API splits its results into pages."""

    type: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = "page"
    size_param: str | None = None
    page_size: int = Field(100, ge=1)
    start: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    max_pages: int = Field(10_000, ge=1)


class ApiSettings(Strict):
    """How an `api` source is called."""

    method: Literal["GET", "POST"] = "GET"
    params: NamedValues = Field(default_factory=dict)
    headers: Headers = Field(default_factory=dict)
    body: Any = None
    records_path: str | None = Field(None, description="dotted path of the records in the JSON body")
    pagination: PaginationSpec = Field(default_factory=PaginationSpec)
    requests_per_second: float | None = Field(None, gt=0)
    burst: int = Field(1, ge=1)
    attempts: int = Field(5, ge=1, le=20)
    backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(30.0, ge=0)
    circuit_breaker_failures: int = Field(5, ge=1)
    circuit_breaker_reset_seconds: float = Field(30.0, ge=0)
    cache_ttl_seconds: float | None = Field(None, gt=0)
    cache_redis_url: Address | None = None
    timeout_seconds: float = Field(30.0, gt=0, description="deadline of each request: the whole answer, however it trickles")
    deadline_seconds: float | None = Field(None, gt=0, description="deadline of the whole source read: every page and retry")
    api_key_header: str | None = Field(None, description="send authentication.api_key in this header (default: Bearer)")
    api_key_param: str | None = Field(None, description="send authentication.api_key as this query parameter")


class GraphqlSettings(Strict):
    """The query of a `graphql` source and how its pages are followed."""

    query: str = ""
    variables: dict[str, Any] = Field(default_factory=dict)
    headers: Headers = Field(default_factory=dict)
    records_path: str = Field("", description="dotted path of the records in `data`, e.g. orders.edges")
    node_key: str | None = Field(None, description="take each record's field, e.g. node for Relay edges")
    page_info_path: str | None = Field(None, description="dotted path of pageInfo {hasNextPage endCursor}")
    cursor_variable: str = "after"
    max_pages: int = Field(10_000, ge=1)
    timeout_seconds: float = Field(30.0, gt=0)


class SoapSettings(Strict):
    """The operation a `soap` source calls (connection_string is the WSDL's URL or path)."""

    operation: str = ""
    arguments: NamedValues = Field(default_factory=dict)
    records_path: str | None = Field(None, description="dotted path of the records in the result")
    service: str | None = Field(None, description="service name, when the WSDL has several")
    port: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)


class RedisSettings(Strict):
    """Which keys a `redis` source reads, and as what."""

    pattern: str = Field("*", description="glob of the keys to read (SCAN MATCH)")
    kind: Literal["auto", "hash", "json", "stream"] = "auto"


class MongoSettings(Strict):
    """What a `mongodb` source reads and how its documents become columns."""

    database: str | None = Field(None, description="default: the database named in the URL")
    collection: str | None = None
    filter: dict[str, Any] = Field(default_factory=dict)
    projection: dict[str, Any] = Field(default_factory=dict)
    pipeline: list[dict[str, Any]] = Field(default_factory=list, description="aggregation pipeline (instead of filter)")
    batch_size: int = Field(10_000, ge=1)
    flatten_separator: str = Field("_", min_length=1, description="nested a.b becomes column a<sep>b")
    flatten_depth: int | None = Field(None, ge=0, description="levels to flatten (default: all); deeper ones stay objects")
    timeout_seconds: float = Field(10.0, gt=0, description="how long to wait for the server")


LAYER_REF = r"^[A-Za-z0-9_]+/(terrain|vegetation|urban|climate)/[A-Za-z0-9_]+$"


def _earth_partition(value: str) -> str:
    """An earth partition names a folder of the earth store: it must not reach outside it."""
    if leaves_folder(value):
        raise ValueError(f"partition {value!r} names a folder of the earth store, so it must be {PLAIN_NAME}, "
                         "such as a partition key of the region (e.g. 2024-06-01)")
    return value


EarthPartition = Annotated[str, AfterValidator(_earth_partition)]


class RasterSampling(Strict):
    """Columns sampled from earth analyzer rasters at each row's longitude/latitude."""

    longitude: str = Field("longitude", description="column of longitudes (WGS84 degrees)")
    latitude: str = Field("latitude", description="column of latitudes (WGS84 degrees)")
    layers: dict[str, Annotated[str, Field(pattern=LAYER_REF)]] = Field(
        min_length=1, description="new column -> <region>/<analyzer>/<raster>, e.g. jacksboro_fault/terrain/slope"
    )
    partition: EarthPartition | None = Field(None, description="partition of partitioned analyzers (default: the latest)")


class DataSource(Strict):
    """One input of the integration."""

    source_name: str = Field(min_length=1)
    source_type: Literal[
        "csv", "json", "excel", "sql", "mongodb", "redis", "api", "parquet", "odata", "graphql", "soap", "mainframe",
        "earth",
    ]
    connection_string: Address | None = Field(None, min_length=1)
    connection: str | None = Field(None, description="a connection of the resource profile: credentials, endpoint, pool")
    query: str | None = None
    authentication: Authentication | None = None
    table: str | None = Field(None, description="sql: table to read when no query is given")
    sheet: str | int | None = Field(None, description="excel: sheet name or index")
    options: dict[str, Any] = Field(default_factory=dict, description="reader options")
    api: ApiSettings = Field(default_factory=ApiSettings, description="api: how to call it")
    redis: RedisSettings = Field(default_factory=RedisSettings, description="redis: which keys")
    graphql: GraphqlSettings = Field(default_factory=GraphqlSettings, description="graphql: the query")
    soap: SoapSettings = Field(default_factory=SoapSettings, description="soap: the operation")
    mongodb: MongoSettings = Field(default_factory=MongoSettings, description="mongodb: what to read")
    copybook: str | None = Field(None, description="mainframe: path of the COBOL copybook")
    encoding: str = Field("cp037", description="mainframe: EBCDIC code page (cp037, cp500, cp1047...)")
    record_format: Literal["fixed", "variable"] = Field(
        "fixed", description="mainframe: fixed-length records, or variable with a 4-byte RDW"
    )
    partition: EarthPartition | None = Field(None, description="earth: partition of a partitioned analyzer (default: the latest)")
    sample_rasters: RasterSampling | None = Field(None, description="add columns sampled from earth rasters at lon/lat")
    allow_empty: bool = Field(
        False, description="a source with no rows is normal: read it (a check on the source says so) instead of failing"
    )

    @model_validator(mode="after")
    def _sql_needs_query_or_table(self) -> DataSource:
        if not self.connection_string and not (self.connection and self.source_type == "sql"):
            raise ValueError(
                "`connection_string` is required (a sql source may name a `connection` of the "
                "resource profile instead)"
            )
        if self.source_type == "sql" and not (self.query or self.table):
            raise ValueError("a sql source needs `query` or `table`")
        if self.source_type == "graphql" and not (self.graphql.query and self.graphql.records_path):
            raise ValueError("a graphql source needs `graphql.query` and `graphql.records_path`")
        if self.source_type == "soap" and not self.soap.operation:
            raise ValueError("a soap source needs `soap.operation`")
        if self.source_type == "mongodb" and not self.mongodb.collection:
            raise ValueError("a mongodb source needs `mongodb.collection`")
        if self.source_type == "earth" and not re.fullmatch(r"[A-Za-z0-9_]+/(terrain|vegetation|urban|climate)", self.connection_string or ""):
            raise ValueError(
                "an earth source's connection_string is <region>/<analyzer> (terrain, vegetation, urban or climate), "
                "e.g. jacksboro_fault/terrain: its statistics table is read"
            )
        if self.partition and self.source_type != "earth":
            raise ValueError("`partition` picks the partition of an earth source; this source is " + self.source_type)
        if self.source_type == "mainframe" and not self.copybook:
            raise ValueError("a mainframe source needs `copybook`: the path of its COBOL copybook")
        return self

    @property
    def key(self) -> str:
        """The name used in asset keys and lineage."""
        return asset_name(self.source_name)


class JoinKey(Strict):
    """A key pair; ``source2`` optionally names the source the second key belongs to."""

    source1_key: str = Field(min_length=1)
    source2_key: str = Field(min_length=1)
    source2: str | None = None


class IntegrationStrategy(Strict):
    """How sources are combined."""

    join_type: Literal["inner", "left", "right", "outer", "cross"] | None = None
    join_keys: list[JoinKey] = Field(default_factory=list)
    merge_strategy: Literal["union", "intersection", "complement"] | None = None
    conflict_resolution: Literal["first", "last", "average", "sum", "custom"] = "first"
    custom_resolution: dict[str, str] = Field(
        default_factory=dict,
        description="custom conflict rule per column: an expression over <source>.<column>",
    )

    @field_validator("custom_resolution")
    @classmethod
    def _parse_custom(cls, value: dict[str, str]) -> dict[str, str]:
        for column, text in value.items():
            try:
                parse_expression(text)
            except ExpressionError as exc:
                raise ValueError(f"custom_resolution for '{column}': {exc}") from None
        return value

    @model_validator(mode="after")
    def _custom_needs_expressions(self) -> IntegrationStrategy:
        if self.conflict_resolution == "custom" and not self.custom_resolution:
            raise ValueError(
                "conflict_resolution 'custom' needs `custom_resolution`: column -> expression "
                "over <source>.<column>, e.g. {email: \"coalesce(crm.email, erp.email)\"}"
            )
        if self.custom_resolution and self.conflict_resolution != "custom":
            raise ValueError(
                f"`custom_resolution` acts only with `conflict_resolution: custom` (it is "
                f"'{self.conflict_resolution}'); set that, or remove custom_resolution"
            )
        alike = [c for c in self.custom_resolution if [n.lower() for n in self.custom_resolution].count(c.lower()) > 1]
        if alike:
            raise ValueError(
                f"custom_resolution has columns that differ only in case: {', '.join(alike)}; column "
                "names are matched ignoring case, so keep one expression per column"
            )
        if self.join_type == "cross" and self.join_keys:
            raise ValueError(
                "join_type 'cross' pairs every row with every row and takes no `join_keys`; "
                "use inner, left, right or outer to join on the keys"
            )
        return self

    @property
    def joins(self) -> bool:
        """Whether the sources are joined (join_keys, or a cross join) rather than merged."""
        return bool(self.join_keys) or self.join_type == "cross"


class TransformationRule(Strict):
    """One step of transformation_rules, applied in order."""

    rule_name: str = Field(min_length=1)
    transformation_type: Literal["mapping", "calculation", "formatting", "validation"]
    source_column: str | None = None
    target_column: str | None = None
    transformation_logic: str | dict[str, Any]

    @field_validator("transformation_logic", mode="before")
    @classmethod
    def _keys_are_text(cls, logic: Any) -> Any:
        """A value map's keys are compared with the column's text; a key that is not text was
        most likely made a boolean or a number by a YAML 1.1 reader (Dagster's, for defs.yaml)."""
        typed = [key for key in logic if not isinstance(key, str)] if isinstance(logic, dict) else []
        if typed:
            raise ValueError(
                f"the keys of a value map are text, but {', '.join(repr(k) for k in typed)} "
                f"{'is' if len(typed) == 1 else 'are'} not: quote them ('yes': 1, '010': 2); a YAML 1.1 reader, "
                "such as Dagster's for defs.yaml, reads unquoted yes/no/on/off/true/false as booleans and 010 as 8")
        return logic

    @model_validator(mode="after")
    def _check_logic(self) -> TransformationRule:
        kind, logic = self.transformation_type, self.transformation_logic
        if kind == "mapping":
            self.transformation_logic = _value_map(logic)
            if not self.source_column:
                raise ValueError("a mapping rule needs `source_column`")
            return self
        if not isinstance(logic, str):
            raise ValueError(f"transformation_logic of a {kind} rule is a string")
        if kind == "formatting":
            if not self.source_column:
                raise ValueError("a formatting rule needs `source_column`")
            try:
                parse_format(logic)
            except FormatError as exc:
                raise ValueError(str(exc)) from None
            return self
        if kind == "calculation" and not (self.target_column or self.source_column):
            raise ValueError("a calculation rule needs `target_column`")
        try:
            parse_expression(logic)
        except ExpressionError as exc:
            raise ValueError(f"transformation_logic: {exc}") from None
        return self

    @property
    def output_column(self) -> str | None:
        """The column the rule writes (None for validation)."""
        if self.transformation_type == "validation":
            return None
        return self.target_column or self.source_column


def _value_map(logic: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(logic, dict):
        return logic
    try:
        value = parse_json(logic)  # strictly: a repeated value would silently keep its last target
    except DocumentError as exc:
        raise ValueError(f"a mapping's transformation_logic must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("a mapping's transformation_logic must be a JSON object of value -> value")
    return value


def known_types(declared: dict[str, str]) -> dict[str, str]:
    """``declared`` (column -> type), refused if a type is not one of COLUMN_TYPES."""
    for column, wanted in declared.items():
        if wanted.split(":", 1)[0] not in COLUMN_TYPES:
            raise ValueError(
                f"column '{column}' has type '{wanted}'; allowed: {', '.join(COLUMN_TYPES)}"
                " (date and timestamp take an optional :format)"
            )
    return declared


class ColumnContract(Strict):
    """What the values of one integrated column must be: a pandera column, checked row by row."""

    type: str | None = Field(None, description=f"one of {', '.join(COLUMN_TYPES)} (date and timestamp may add :format)")
    nullable: bool = Field(True, description="false: a null fails the row")
    min: Any = Field(None, description="smallest allowed value (inclusive)")
    max: Any = Field(None, description="largest allowed value (inclusive)")
    allowed: list[Any] | None = Field(None, min_length=1, description="the only values allowed")
    pattern: str | None = Field(None, description="a regular expression every value must match from its start")
    unique: bool = Field(False, description="true: rows sharing a value all fail")
    description: str | None = Field(None, description="shown with the column in the UI")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
        return value

    def constrains(self) -> bool:
        """Whether anything beyond the type is declared (a contract, not only a format)."""
        return (not self.nullable or self.unique or self.min is not None or self.max is not None
                or self.allowed is not None or self.pattern is not None)


class DataQualityChecks(Strict):
    """The four checks of seed 003 plus the settings they act with."""

    duplicate_check: bool = False
    null_check: bool = False
    format_check: bool = False
    business_rule_check: bool = False
    required_columns: list[str] | None = Field(
        None, description="null_check quarantines rows with a null here (default: join keys)"
    )
    null_fill: dict[str, Any] = Field(default_factory=dict, description="column -> fill value")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description=f"format_check: column -> type ({', '.join(COLUMN_TYPES)}; date:%fmt)",
    )
    contracts: dict[str, ColumnContract] = Field(
        default_factory=dict, description="column -> contract; written as an object under `columns`"
    )
    schema_file: str | None = Field(None, description="a pandera schema (its YAML or JSON form) the integrated rows must meet")

    @model_validator(mode="before")
    @classmethod
    def _contracts_from_columns(cls, data: Any) -> Any:
        """`columns: {age: {type: integer, min: 0}}`: the type converts (format_check), the rest is a contract."""
        if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
            return data
        types, contracts = {}, dict(data.get("contracts") or {})
        for column, declared in data["columns"].items():
            if isinstance(declared, dict):
                if isinstance(declared.get("type"), str):
                    known_types({f"{column}": declared["type"]})  # named as the user wrote it, under columns
                contracts[column] = declared
                if declared.get("type") is not None and data.get("format_check"):
                    types[column] = declared["type"]
            else:
                types[column] = declared
        return {**data, "columns": types, "contracts": contracts}

    @model_validator(mode="after")
    def _settings_need_their_check(self) -> DataQualityChecks:
        needs = [
            ("null_fill", self.null_fill, "null_check"),
            ("required_columns", self.required_columns, "null_check"),
            ("columns", self.columns, "format_check"),
        ]
        for key, value, flag in needs:
            if value and not getattr(self, flag):
                raise ValueError(f"`{key}` acts only with `{flag}: true`")
        return self

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        return known_types(value)


class IntegrationConfig(Strict):
    """Sources, strategy, rules and checks."""

    data_sources: list[DataSource] = Field(min_length=1)
    integration_strategy: IntegrationStrategy = Field(default_factory=IntegrationStrategy)
    transformation_rules: list[TransformationRule] = Field(default_factory=list)
    data_quality_checks: DataQualityChecks = Field(default_factory=DataQualityChecks)

    @model_validator(mode="after")
    def _layers_fit(self) -> IntegrationConfig:
        rules = self.transformation_rules
        past = rule_past_layer_limit(
            ([r.source_column or ""] if r.transformation_type in ("mapping", "formatting")
             else parse_expression(str(r.transformation_logic)).columns, r.output_column)
            for r in rules
        )
        if past is not None:
            raise ValueError(
                f"transformation rule '{rules[past].rule_name}' (rule {past + 1}) would start layer {MAX_LAYERS + 1} of "
                f"rules that each read a column an earlier one writes; at most {MAX_LAYERS} such steps run in one "
                "pipeline: combine steps into one expression, or split the pipeline"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> IntegrationConfig:
        keys = [source.key for source in self.data_sources]
        # ignoring case: the engine's tables are named after sources, and SQL names ignore case
        repeated = sorted({k for k in keys if [n.lower() for n in keys].count(k.lower()) > 1})
        if repeated:
            cased = " (compared ignoring case, as SQL compares names)" if len({k.lower() for k in repeated}) < len(repeated) else ""
            raise ValueError(f"source names must be unique; repeated: {', '.join(repeated)}{cased}")
        strategy = self.integration_strategy
        for pair in strategy.join_keys:
            if pair.source2 and asset_name(pair.source2) not in keys:
                raise ValueError(
                    f"join key source2 '{pair.source2}' is not a source; sources: {', '.join(keys)}"
                )
        if (
            len(keys) > 1
            and strategy.join_type not in (None, "cross")
            and not strategy.join_keys
            and not strategy.merge_strategy
        ):
            raise ValueError(
                f"join_type '{strategy.join_type}' needs join_keys (or give a merge_strategy)"
            )
        return self


def settings_without_effect(config: IntegrationConfig) -> list[tuple[str, str]]:
    """(field path, why) for each setting that is valid but changes nothing, for warnings.

    Errors would refuse files copied from seed 003's schema, which lists these settings side
    by side; DESIGN says which one wins (join_keys over merge_strategy, for instance).
    """
    strategy, checks = config.integration_strategy, config.data_quality_checks
    where = "integration_config.integration_strategy"
    found: list[tuple[str, str]] = []
    merged = len(config.data_sources) > 1 and not strategy.joins
    if strategy.joins and strategy.merge_strategy:
        found.append((f"{where}.merge_strategy", (
            f"merge_strategy '{strategy.merge_strategy}' is not used: with "
            f"{'join_keys' if strategy.join_keys else 'join_type cross'} the sources are joined; a merge "
            "(union, intersection, complement) applies only without join keys, so remove one of the two"
        )))
    if merged and strategy.join_type:
        found.append((f"{where}.join_type", (
            f"join_type '{strategy.join_type}' is not used: without join_keys the sources are merged "
            f"({strategy.merge_strategy or 'union'}); add join_keys to join them"
        )))
    if merged and "conflict_resolution" in strategy.model_fields_set:
        found.append((f"{where}.conflict_resolution", (
            f"conflict_resolution '{strategy.conflict_resolution}' is not used: merged sources have no "
            "conflicts to resolve (union keeps each row's own values; intersection and complement keep "
            "the first source's rows); it resolves the columns that joined sources share"
        )))
    if checks.format_check and not checks.columns:
        found.append(("integration_config.data_quality_checks.format_check", (
            "format_check is on but declares no `columns`, so no value is converted or checked and the "
            f"check always passes; add `columns` (column -> {', '.join(COLUMN_TYPES)})"
        )))
    if checks.business_rule_check and not any(r.transformation_type == "validation" for r in config.transformation_rules):
        found.append(("integration_config.data_quality_checks.business_rule_check", (
            "business_rule_check is on but no transformation rule is a validation, so the check always "
            "passes; add a rule with transformation_type: validation"
        )))
    return found


class Partitioning(Strict):
    """How the output is split into folders."""

    partition_by: str = Field(min_length=1)
    partition_type: Literal["date", "category", "hash"]
    granularity: Literal["day", "month", "year"] = "day"
    buckets: int = Field(8, ge=1, le=4096)


class OutputConfig(Strict):
    """Where and how the integrated data is written."""

    output_format: Literal["csv", "json", "parquet", "sql", "mongodb", "delta"] = "parquet"
    output_destination: Address | None = None
    partitioning: Partitioning | None = None
    table: str | None = Field(None, description="sql: target table (default: pipeline name)")
    connection: str | None = Field(None, description="a connection of the resource profile: credentials, endpoint, pool")
    collection: str | None = Field(None, description="mongodb: target collection (default: pipeline name)")
    database: str | None = Field(None, description="mongodb: default: the database named in the URL")
    mode: Literal["replace", "append", "upsert"] = Field(
        "replace", description="sql and mongodb: replace the rows (or the partition's), append, or upsert on upsert_keys"
    )
    upsert_keys: list[str] = Field(default_factory=list, description="sql and mongodb: columns that identify a row for upsert")
    overwrite: bool = Field(
        False, description="file outputs: the pipeline may take over files at the destination that it did not write "
        "(they are then replaced like its own); never the project folder, a parent of it, /, home or a storage folder. "
        "sql, mongodb and delta in mode replace: the pipeline may take over an existing table or collection it did not "
        "create (recorded as its own from then on: in memories_outputs, or in the Delta table's name)",
    )

    @model_validator(mode="after")
    def _sql_needs_url(self) -> OutputConfig:
        if (self.mode == "upsert") != bool(self.upsert_keys):
            raise ValueError("`mode: upsert` and `upsert_keys` go together: the keys say which rows an incoming row replaces")
        if self.output_format == "mongodb" and not (self.output_destination or "").startswith(("mongodb://", "mongodb+srv://", "${")):
            raise ValueError("a mongodb output needs `output_destination`: a URL such as mongodb://host:27017/db")
        if self.output_format == "sql" and "://" not in (self.output_destination or "") and not self.connection:
            raise ValueError(
                "a sql output needs `output_destination`: a SQLAlchemy URL such as "
                f"sqlite:///output/data.db, not {self.output_destination!r}"
            )
        if self.output_format == "delta" and self.mode == "upsert":
            raise ValueError("a delta output replaces (a partition's rows) or appends; `mode: upsert` is for sql and mongodb")
        if self.output_format == "delta" and "://" in (self.output_destination or "") and not (
                self.output_destination or "").startswith(("s3://", "s3a://", "file://", "${")):
            raise ValueError(f"a delta output goes to a local folder or an s3:// location, not {self.output_destination!r}")
        if self.output_format == "sql" and self.partitioning:
            raise ValueError(
                "partitioning applies to file outputs; a sql output replaces a partition's rows "
                "by partitions.column"
            )
        return self


class PartitionsSpec(Strict):
    """Dagster partitions that make the integration incremental."""

    type: Literal["daily", "weekly", "monthly", "dynamic"]
    start: dt.date | None = None
    end: dt.date | None = None
    column: str | None = Field(None, description="column filtered to the partition's window")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
            raise ValueError(f"unknown timezone '{value}'; use an IANA name such as UTC or Europe/Berlin") from None
        return value

    @model_validator(mode="after")
    def _time_needs_start(self) -> PartitionsSpec:
        if self.type != "dynamic" and self.start is None:
            raise ValueError(f"{self.type} partitions need `start` (a date such as 2024-01-01)")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("partitions `end` must come after `start`")
        return self


class RetrySpec(Strict):
    """How often Dagster tries a step again after a failure that may be transient (a source or
    destination that did not answer); errors in the declaration or the data are never retried."""

    max_retries: int = Field(3, ge=1, le=100)
    delay_seconds: float = Field(10.0, ge=0, description="before the first retry")
    backoff: Literal["linear", "exponential"] | None = Field(None, description="how the delay grows")
    jitter: Literal["full", "plus_minus"] | None = None


class IntegrationSpec(Strict):
    """A whole integration declaration: one pipeline."""

    integration_config: IntegrationConfig
    output_config: OutputConfig = Field(default_factory=OutputConfig)
    name: str | None = None
    description: str | None = None
    partitions: PartitionsSpec | None = None
    schedule: str | None = Field(None, description="cron expression, e.g. '0 2 * * *'")
    retry: RetrySpec | None = Field(None, description="retries of steps whose source or destination did not answer")
    schema_: str | None = Field(None, alias="$schema")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _output_partition_checks(self) -> IntegrationSpec:
        parts = self.partitions
        if parts and parts.type == "dynamic" and self.schedule:
            raise ValueError(
                "a schedule cannot pick a dynamic partition; dynamic partitions are added by the "
                "pipeline's file sensor or by hand"
            )
        if parts and self.output_config.output_format in ("sql", "delta") and not parts.column:
            raise ValueError(
                f"a partitioned {self.output_config.output_format} output needs partitions.column to "
                "replace the partition's rows"
            )
        return self

