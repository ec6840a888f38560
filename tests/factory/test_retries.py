"""Failures that may be transient are retried under the declared retry policy and keep a
(redacted) traceback in the event log; errors in the declaration or the data are not retried.
Runs go through Dagster itself: in process, and as `dagster asset materialize` subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import yaml
from werkzeug import Response

from tests.conftest import PROJECT, assert_never_recorded, free_port, recorded_text

KEY = "rates+Key/With=Sp3cials"  # needs URL-encoding in the query string
HEADER_SECRET = "literal-Header-Secret-42"
DAGSTER = Path(sys.executable).with_name("dagster")


def flaky(failures: int):
    """A handler failing with 503 ``failures`` times, then answering."""
    calls = []

    def handle(request):
        calls.append(request.args.get("appid"))
        if len(calls) <= failures:
            return Response("busy", status=503)
        return Response('[{"id": 1, "rate": 1.5}]', content_type="application/json")

    return handle, calls


def spec(url: str, retry: dict | None = None) -> dict:
    document = {"integration_config": {"data_sources": [{
        "source_name": "rates", "source_type": "api", "connection_string": url,
        "authentication": {"api_key": "${RATES_KEY}"},
        "api": {"api_key_param": "appid", "attempts": 1, "headers": {"X-Client-Secret": HEADER_SECRET}}}]},
        "output_config": {"output_format": "parquet", "output_destination": "output/rates.parquet"}}
    return document | ({"retry": retry} if retry else {})


def write_project(root, document: dict) -> None:
    folder = root / "assets" / "integrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rates.yaml").write_text(yaml.safe_dump(document))


def run_in_process(root, monkeypatch, document: dict):
    write_project(root, document)
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(root / "assets"))
    from memories_dagster.definitions import build_definitions

    instance = dg.DagsterInstance.ephemeral()
    result = build_definitions().resolve_job_def("rates_job").execute_in_process(instance=instance, raise_on_error=False)
    return result, instance


def events(result, kind: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind]


def chain_text(error) -> str:
    """Messages and stack frames of an error and everything it was raised from."""
    parts = []
    while error is not None:
        parts += [error.message, *error.stack]
        error = error.cause or error.context
    return "\n".join(parts)


def test_a_server_failing_twice_is_retried_and_the_traceback_is_kept_redacted(httpserver, tmp_path, monkeypatch):
    monkeypatch.setenv("RATES_KEY", KEY)
    handle, calls = flaky(2)
    httpserver.expect_request("/rates").respond_with_handler(handle)
    result, instance = run_in_process(tmp_path, monkeypatch, spec(httpserver.url_for("/rates"), {"max_retries": 3, "delay_seconds": 0.1}))
    assert result.success and calls == [KEY] * 3
    retries = events(result, "STEP_UP_FOR_RETRY")
    assert len(retries) == 2
    traceback = chain_text(retries[0].event_specific_data.error)
    assert "HTTP 503" in traceback and "RedactedError" in traceback and "in _request" in traceback
    records = recorded_text(instance, result.run_id)
    assert_never_recorded(records, KEY)
    assert_never_recorded(records, HEADER_SECRET)


def test_a_user_error_is_not_retried(httpserver, tmp_path, monkeypatch):
    monkeypatch.setenv("RATES_KEY", KEY)
    httpserver.expect_request("/rates").respond_with_data("no such thing", status=404)
    result, instance = run_in_process(tmp_path, monkeypatch, spec(httpserver.url_for("/rates"), {"max_retries": 3, "delay_seconds": 0}))
    assert not result.success and not events(result, "STEP_UP_FOR_RETRY")
    failure = events(result, "STEP_FAILURE")[0].event_specific_data
    assert "HTTP 404" in failure.error.message and failure.user_failure_data.metadata["retryable"].value is False
    assert_never_recorded(recorded_text(instance, result.run_id), KEY)


def test_an_unreachable_database_is_retried_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("ERP_PASSWORD", "Db-Secret-Value-9")
    result, instance = run_in_process(tmp_path, monkeypatch, {
        "retry": {"max_retries": 1, "delay_seconds": 0},
        "integration_config": {"data_sources": [{
            "source_name": "erp", "source_type": "sql", "table": "t",
            "connection_string": f"postgresql://postgres:${{ERP_PASSWORD}}@127.0.0.1:{free_port()}/test"}]}})
    assert not result.success and len(events(result, "STEP_UP_FOR_RETRY")) == 1
    final = chain_text(events(result, "STEP_FAILURE")[0].event_specific_data.error)
    assert "psycopg2.OperationalError" in final and "Connection refused" in final
    assert_never_recorded(recorded_text(instance, result.run_id), "Db-Secret-Value-9")


def test_dagster_asset_materialize_retries_and_records_no_secret(httpserver, tmp_path):
    handle, calls = flaky(2)
    httpserver.expect_request("/rates").respond_with_handler(handle)
    write_project(tmp_path, spec(httpserver.url_for("/rates"), {"max_retries": 2, "delay_seconds": 0.1}))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "MEMORIES_ASSETS_DIR": str(tmp_path / "assets"),
           "DAGSTER_HOME": str(home), "RATES_KEY": KEY}
    done = subprocess.run([DAGSTER, "asset", "materialize", "-m", "memories_dagster.definitions", "--select", "rates/sources/rates"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(calls) == 3
    assert_never_recorded(done.stdout + done.stderr, KEY)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [run] = instance.get_runs()
        records = recorded_text(instance, run.run_id)
        assert records.count('"event_type_value": "STEP_UP_FOR_RETRY"') == 2
        assert_never_recorded(records, KEY)
        assert_never_recorded(records, HEADER_SECRET)


def test_a_retry_policy_declared_in_python_retries_a_transient_failure(httpserver, tmp_path, monkeypatch):
    monkeypatch.setenv("RATES_KEY", KEY)
    handle, calls = flaky(1)
    httpserver.expect_request("/rates").respond_with_handler(handle)
    write_project(tmp_path, spec(httpserver.url_for("/rates")))
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    from memories_dagster.definitions import build_definitions

    job = dg.define_asset_job("retried", selection=dg.AssetSelection.groups("rates"), op_retry_policy=dg.RetryPolicy(max_retries=2))
    defs = dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("retried").execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success and len(calls) == 2 and len(events(result, "STEP_UP_FOR_RETRY")) == 1
