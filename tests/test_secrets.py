"""Credentials never reach messages, descriptions or event records, in any form or case.

Expected forms come from Python's own encoders (base64, json, urllib); leaks are looked for in
Dagster's serialized event records and in the real databases' own error messages.
"""

import base64
import html
import json
import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from memories_dagster.secrets import MIN_SECRET_LENGTH, SecretError, redact, redacted, register, resolve
from tests.conftest import PROJECT, assert_never_recorded, recorded_text, secret_forms


def unique(base: str) -> str:
    return f"{base}{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("template", ["Sup3r-Secret!", 'p@ss"w/rd\\x:y+z', "Pässwörd-Ünïcode&<>"])
def test_every_form_of_a_registered_credential_is_redacted(template):
    secret = unique(template)
    register(secret, "test")
    raw = secret.encode()
    # name -> (text written, part that must not be shown): an encoded prefix shifts base64's alignment
    forms = {name: (form, form) for name, form in secret_forms(secret).items() if name != "basic_auth"} | {
        "swapcase": (secret.swapcase(),) * 2, "twice_url": (urllib.parse.quote(urllib.parse.quote(secret, safe=""), safe=""),) * 2,
        "json_unicode": (json.dumps(secret, ensure_ascii=False)[1:-1],) * 2, "repr": (repr(secret)[1:-1],) * 2,
        "html": (html.escape(secret),) * 2, "base64_urlsafe": (base64.urlsafe_b64encode(raw).decode().rstrip("="),) * 2,
        **{f"base64_after_{n}": (base64.b64encode(b"x" * n + raw).decode(), base64.b64encode(b"x" * n + raw).decode()[n + 2:-4])
           for n in (1, 2, 3, 5)},
    }
    for name, (written, hidden) in forms.items():
        shown = redact(f"before {written} after")
        assert hidden not in shown and shown.startswith("before ") and shown.endswith(" after"), name


def test_a_basic_auth_header_is_redacted_whole():
    password = unique("basic-pw-")
    register(password, "test")
    header = "Basic " + base64.b64encode(f"ann:{password}".encode()).decode()
    shown = redact(f"sent Authorization: {header}")
    assert password not in base64.b64decode(shown.rsplit(" ", 1)[-1] + "==", validate=False).decode(errors="replace")


@pytest.mark.parametrize("url, password", [
    ("postgresql://u:p@ss-word-1@db.internal:5432/x", "p@ss-word-1"),
    ("redis://:sl/ash-pass@127.0.0.1:6379/0", "sl/ash-pass"),
    ("https://u:q?uest#pass@host/path?email=a@b.com", "q?uest#pass"),
])
def test_a_password_written_unencoded_in_a_url_is_hidden_whole(url, password):
    shown = redact(f"cannot reach {url}: refused")
    pieces = [piece for piece in re.split(r"[@/?#]", password) if len(piece) >= 3]
    assert not [piece for piece in pieces if piece in shown], shown
    assert shown.startswith("cannot reach ") and "***@" in shown


def test_short_credentials_are_refused_naming_the_field_not_the_value(tmp_path, monkeypatch):
    spec = tmp_path / "assets" / "integrations" / "short.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(yaml.safe_dump({"integration_config": {"data_sources": [
        {"source_name": "a", "source_type": "api", "connection_string": "https://api.example.com/v1",
         "authentication": {"api_key": "Q7"}},
        {"source_name": "b", "source_type": "api", "connection_string": "https://api.example.com/v1",
         "api": {"params": {"access_token": "zX9"}}},
        {"source_name": "c", "source_type": "sql", "table": "t", "connection_string": "postgresql://u:Kq4@h/db"}]}}))
    done = subprocess.run([sys.executable, "-m", "memories_dagster.cli", "validate", str(spec)], capture_output=True,
                          text=True, cwd=PROJECT, env={**__import__("os").environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 1
    for field in ("data_sources[0].authentication.api_key", "data_sources[1].api.params", "data_sources[2].connection_string"):
        assert field in done.stdout and f"at least {MIN_SECRET_LENGTH}" in done.stdout
    for value in ("Q7", "zX9", "Kq4"):
        assert value not in done.stdout + done.stderr
    monkeypatch.setenv("SHORT_PW", "ab")
    with pytest.raises(SecretError, match="ERP_URL") as caught:
        resolve("postgresql://u:${SHORT_PW}@h/db", "ERP_URL")
    assert "ab@" not in str(caught.value)


def test_a_redacted_chain_keeps_types_and_frames_without_the_secret():
    secret = unique("chain-secret-")
    register(secret, "test")
    try:
        try:
            raise OSError(f"connect failed for postgresql://u:{secret}@h/db")
        except OSError as inner:
            raise RuntimeError(f"wrapped {secret.upper()}") from inner
    except RuntimeError as outer:
        copy = redacted(outer)
    assert str(copy).startswith("builtins.RuntimeError: wrapped ***") and "builtins.OSError" in str(copy.__cause__)
    assert copy.__traceback__ is not None and secret.lower() not in (str(copy) + str(copy.__cause__)).lower()


def _run(project_root, monkeypatch, name: str, document: dict):
    folder = project_root / "assets" / "integrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(project_root / "assets"))
    from memories_dagster.definitions import build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(f"{name}_job").execute_in_process(instance=instance, raise_on_error=False)
    return defs, result, recorded_text(instance, result.run_id)


def test_a_literal_api_key_sent_as_a_query_parameter_never_reaches_the_event_log(httpserver, tmp_path, monkeypatch):
    key = unique("Lit3ral-Key_")
    httpserver.expect_request("/v1/rates").respond_with_data("busy", status=503)
    _, result, records = _run(tmp_path, monkeypatch, "rates", {"integration_config": {"data_sources": [{
        "source_name": "rates", "source_type": "api", "connection_string": httpserver.url_for("/v1/rates"),
        "authentication": {"api_key": key}, "api": {"api_key_param": "appid", "attempts": 1}}]}})
    assert not result.success and "HTTP 503" in records
    assert_never_recorded(records, key)


def test_a_literal_password_holding_an_at_sign_reaches_postgres_and_never_shows(postgres, table_name, tmp_path, monkeypatch):
    password = unique("Lit@ral-Pass-")
    (tmp_path / "rows.csv").write_text("id,name\n1,a\n2,b\n")
    destination = f"postgresql+psycopg2://postgres:{password}@127.0.0.1:5432/test"  # trust: any password is taken
    try:
        defs, result, records = _run(tmp_path, monkeypatch, "at_sign", {
            "integration_config": {"data_sources": [{"source_name": "rows", "source_type": "csv",
                                                      "connection_string": str(tmp_path / "rows.csv")}]},
            "output_config": {"output_format": "sql", "output_destination": destination, "table": table_name}})
        assert result.success
        assert pd.read_sql_table(table_name, postgres)["id"].tolist() == [1, 2]
        description = defs.resolve_asset_graph().get(dg.AssetKey(["at_sign", "output"])).description
        for text in (records, description):
            assert_never_recorded(text, password)
            assert_never_recorded(text, password.split("@", 1)[1])
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table_name}"'))


def test_a_password_postgres_echoes_in_lower_case_stays_hidden(postgres, tmp_path, monkeypatch):
    password = unique("MixedCasePw")  # also (by mistake) the name of a table: PostgreSQL folds it to lower case
    monkeypatch.setenv("ERP_PASSWORD", password)
    _, result, records = _run(tmp_path, monkeypatch, "echo", {"integration_config": {"data_sources": [{
        "source_name": "erp", "source_type": "sql", "connection_string": "postgresql://postgres@127.0.0.1:5432/test",
        "authentication": {"username": "postgres", "password": "${ERP_PASSWORD}"},
        "query": f"SELECT * FROM {password}"}]}})
    assert not result.success and "does not exist" in records
    assert_never_recorded(records, password)


def test_a_short_password_from_the_environment_fails_the_run_without_retrying(tmp_path, monkeypatch):
    monkeypatch.setenv("ERP_PASSWORD", "xy")
    _, result, records = _run(tmp_path, monkeypatch, "short_env", {
        "retry": {"max_retries": 2, "delay_seconds": 0},
        "integration_config": {"data_sources": [{
            "source_name": "erp", "source_type": "sql", "table": "t", "connection_string": "postgresql://postgres@127.0.0.1:5432/test",
            "authentication": {"password": "${ERP_PASSWORD}"}}]}})
    assert not result.success and f"at least {MIN_SECRET_LENGTH}" in records
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.mark.parametrize("template", [
    "'reader:{pw}@db.internal:5432/erp' is not a SQLAlchemy URL",  # no scheme
    "cannot reach //reader:{pw}@db.internal/erp",
    "jdbc:postgresql://reader:{pw}@db.internal:5432/erp refused",
    "mongodb+srv://reader:{pw}@cluster0.example.net/erp?retryWrites=true: timed out",
    "Driver={{ODBC Driver 18}};Server=db;UID=reader;PWD={pw};Encrypt=yes",
    "Driver={{ODBC Driver 18}};Server=db;UID=reader;PWD={{{pw};x}};Encrypt=yes",
    "connection 'host=db.internal password={pw} user=reader' failed",
    "connection 'host=db.internal password = '{pw}' user=reader' failed",
    "jdbc:mysql://db.internal:3306/erp?user=reader&password={pw}",
])
def test_a_password_in_any_connection_string_form_is_hidden_without_being_registered(template):
    password = unique("Tr0ub4dor-and-")  # never registered: the form alone must give it away
    shown = redact(template.format(pw=password))
    assert password not in shown and "***" in shown, shown


def test_redaction_takes_linear_time_on_adversarial_text():
    import time

    # each took the former pattern seconds for 80 thousand characters (quadratic, so minutes for
    # 1 MB). Linear now: sixteen times the text takes about sixteen times as long (quadratic: 256
    # times); the ratio, not a wall-clock bound, since the time per MB grows with the secrets
    # registered by earlier tests and with the machine's load (CI measured up to 8x for 4x)
    makers = [lambda n: "a" * n, lambda n: "a://:" * (n // 5), lambda n: "=a:" * (n // 3) + "x://u:pw@h",
              lambda n: "a@" * (n // 2), lambda n: "x://u:" + "@a@" * (n // 3)]

    def seconds(text: str) -> float:
        timings = []
        for _ in range(2):
            began = time.perf_counter()
            redact(text)
            timings.append(time.perf_counter() - began)
        return min(timings)

    for make in makers:
        small, large = seconds(make(100_000)), seconds(make(1_600_000))
        assert large < 64 * max(small, 0.005), (make(20), small, large)
        assert large < 30, (make(20), large)


def _write_schemeless_source(root) -> str:
    """A project under ``root`` whose sql source `erp` has a URL without scheme; its password."""
    password = unique("Tr0ub4dor-and-")
    folder = root / "assets" / "integrations"
    folder.mkdir(parents=True)
    (folder / "erp.yaml").write_text(yaml.safe_dump({"integration_config": {"data_sources": [{
        "source_name": "erp", "source_type": "sql", "table": "orders",
        "connection_string": f"reader:{password}@db.internal:5432/erp"}]}}))
    return password


def test_a_url_without_scheme_is_refused_at_validation_without_showing_it(tmp_path):
    password = _write_schemeless_source(tmp_path)
    result = subprocess.run([str(Path(sys.executable).with_name("memories")), "validate", str(tmp_path / "assets")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "without a scheme" in result.stdout, result.stdout
    assert_never_recorded(result.stdout + result.stderr, password)


@pytest.mark.slow
def test_a_url_without_scheme_never_reaches_the_dagster_home_or_the_console(tmp_path):
    password = _write_schemeless_source(tmp_path)
    (tmp_path / "home").mkdir()
    env = {**os.environ, "MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = subprocess.run([str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m",
                             "memories_dagster.definitions", "--select", "group:erp"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert_never_recorded(result.stdout + result.stderr, password)
    stored = [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in stored)  # the event log was written
    for path in stored:  # sqlite databases, compute logs (*.err, *.out): every byte as text
        assert_never_recorded(path.read_bytes().decode("utf-8", errors="replace"), password)
