"""Shared fixtures: integration runs over small in-test data, and the machine's real databases."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from memories_dagster.engine.integrate import IntegrationOutcome, integrate
from memories_dagster.specs.integration import IntegrationSpec

PROJECT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("MEMORIES_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("MEMORIES_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
START_HINTS = {
    "postgresql": "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


@dataclass
class Run:
    """An engine run and its outputs read back as DataFrames."""

    outcome: IntegrationOutcome
    data: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def report(self) -> dict:
        return self.outcome.report["integration_report"]

    def check(self, name: str):
        return next(c for c in self.outcome.checks if c.name == name)


def spec_of(sources: dict[str, str] | list[str], **config) -> IntegrationSpec:
    """A spec whose sources are parquet files named after ``sources``."""
    names = list(sources)
    document = {
        "integration_config": {
            "data_sources": [
                {"source_name": n, "source_type": "parquet", "connection_string": f"{n}.parquet"} for n in names
            ],
            **config,
        }
    }
    return IntegrationSpec.model_validate(document)


@pytest.fixture
def run_integration(tmp_path):
    """Integrate DataFrames (source name -> frame) with the given config keys."""

    def run(frames: dict[str, pd.DataFrame], **config) -> Run:
        spec = spec_of(list(frames), **config)
        inputs = {}
        for name, frame in frames.items():
            path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.parquet"
            frame.to_parquet(path, index=False)
            inputs[name] = str(path)
        integrated, quarantine = tmp_path / "integrated.parquet", tmp_path / "quarantine.parquet"
        outcome = integrate(spec.integration_config, inputs, str(integrated), str(quarantine))
        return Run(outcome, pd.read_parquet(integrated), pd.read_parquet(quarantine))

    return run


def _database(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        backend = engine.url.get_backend_name()
        pytest.fail(
            f"{backend} is not reachable at {engine.url.render_as_string(hide_password=True)} "
            f"({str(exc.orig).splitlines()[0]}); {START_HINTS.get(backend, '')}",
            pytrace=False,
        )
    return engine


@pytest.fixture(scope="session")
def postgres() -> sa.Engine:
    """The machine's PostgreSQL (database test)."""
    return _database(POSTGRES_URL)


@pytest.fixture(scope="session")
def mariadb() -> sa.Engine:
    """The machine's MariaDB (database test)."""
    return _database(MARIADB_URL)


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def materialize_spec(tmp_path, monkeypatch):
    """Write one spec into a fresh project under tmp_path and run its job through Dagster."""
    import dagster as dg
    import yaml

    from memories_dagster.definitions import build_definitions

    def run(name: str, document: dict):
        folder = tmp_path / "assets" / "integrations"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
        monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
        job = build_definitions().resolve_job_def(f"{name}_job")
        return job.execute_in_process(instance=dg.DagsterInstance.ephemeral())

    return run


def materialization_of(result, *key: str):
    """The materialization event of an asset key in a run result."""
    import dagster as dg

    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            found = event.event_specific_data.materialization
            if found.asset_key == dg.AssetKey(list(key)):
                return found
    raise AssertionError(f"no materialization of {'/'.join(key)}")


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix():
    """(client, prefix) on the machine's Redis: a key prefix no other test uses, its keys removed afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes "
                    "--bind 127.0.0.1 --port 6379 --save '' --appendonly no", pytrace=False)
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_store():
    """moto's S3 server for the session: ("s3://lake", a profile connection to it, an s3fs filesystem)."""
    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    connection = {"type": "s3", "endpoint_url": f"http://{host}:{port}", "region_name": "us-east-1",
                  "aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}
    fs = fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=connection["endpoint_url"])
    fs.mkdir("lake")
    yield "s3://lake", connection, fs
    server.stop()


def secret_forms(secret: str) -> dict[str, str]:
    """The forms a credential may take in a record, each made by Python's own encoders."""
    import base64
    import json
    import urllib.parse

    raw = secret.encode()
    return {
        "plain": secret, "upper": secret.upper(), "lower": secret.lower(),
        "url": urllib.parse.quote(secret, safe=""), "url_plus": urllib.parse.quote_plus(secret),
        "json": json.dumps(secret)[1:-1],
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "basic_auth": base64.b64encode(b"user:" + raw).decode()[8:-4],  # the part only the secret decides
    }


def recorded_text(instance, run_id: str) -> str:
    """Every event log record of a run, serialized as Dagster stores it."""
    from dagster._serdes import serialize_value

    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


def assert_never_recorded(text: str, secret: str) -> None:
    """No form of ``secret`` in ``text``."""
    found = {name: form for name, form in secret_forms(secret).items() if form in text}
    assert not found, f"the secret appears as {', '.join(found)}"
