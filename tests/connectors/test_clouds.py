"""File sources and outputs on object stores, against local stand-ins that speak each cloud's
protocol: moto's S3 server, gcp-storage-emulator, and Azurite (from npm). Each is started by the
test session and stopped after it."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import fsspec
import pandas as pd
import pytest
import yaml

from tests.conftest import free_port

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ORDERS = "order_id,customer,amount,region\n1,ann,10.5,north\n2,bob,-3,south\n3,cy,7,north\n"


@pytest.fixture(scope="session")
def gcs_store():
    from gcp_storage_emulator.server import create_server

    # gcsfs's experimental bucket-type probe speaks gRPC, which the emulator does not: without
    # this it waits 60 s per bucket before falling back to plain JSON-API calls.
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    if "gcsfs" in __import__("sys").modules:
        pytest.fail("gcsfs was imported before the emulator fixture could configure it", pytrace=False)

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    connection = {"type": "gcs", "project": "test", "endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}
    fs = fsspec.filesystem("gs", project="test", endpoint_url=connection["endpoint_url"], token="anon")
    fs.mkdir("lake")
    yield "gs://lake", connection, fs
    server.stop()


@pytest.fixture(scope="session")
def azure_store(tmp_path_factory):
    node_home = Path(os.environ.get("MEMORIES_NODE_HOME", Path.home() / ".cache" / "memories-node"))
    binary = node_home / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.fail("Azurite needs Node.js and npm: apt-get install nodejs npm", pytrace=False)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(node_home), "azurite@3"], check=True, timeout=600)
    port = free_port()
    folder = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(folder),
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"Azurite did not start on port {port}", pytrace=False)
    connection_string = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                         f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    connection = {"type": "adls2", "storage_account": "devstoreaccount1", "connection_string": connection_string}
    fs = fsspec.filesystem("abfs", connection_string=connection_string)
    fs.mkdir("lake")
    yield "abfs://lake", connection, fs
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["s3_store", "gcs_store", "azure_store"])
def store(request):
    return request.getfixturevalue(request.param)


def project(tmp_path, connection, root, prefix):
    (tmp_path / "assets" / "integrations").mkdir(parents=True)
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "cloud.yaml").write_text(yaml.safe_dump({"connections": {"lake": connection}}))
    (tmp_path / "assets" / "integrations" / "orders.yaml").write_text(yaml.safe_dump({
        "integration_config": {
            "data_sources": [{"source_name": "orders", "source_type": "csv", "connection": "lake",
                              "connection_string": f"{root}/{prefix}/in/orders.csv"}],
            "transformation_rules": [{"rule_name": "positive", "transformation_type": "validation", "transformation_logic": "amount >= 0"}],
        },
        "output_config": {"output_format": "parquet", "connection": "lake", "output_destination": f"{root}/{prefix}/out",
                          "partitioning": {"partition_by": "region", "partition_type": "category"}},
    }))


def run(tmp_path, monkeypatch):
    import dagster as dg

    from memories_dagster.definitions import build_definitions

    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.setenv("MEMORIES_PROFILE", "cloud")
    job = build_definitions().resolve_job_def("orders_job")
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_read_and_write_partitioned_outputs_atomically(store, tmp_path, monkeypatch):
    root, connection, fs = store
    prefix = tmp_path.name
    bucket = root.split("://", 1)[1]
    fs.pipe(f"{bucket}/{prefix}/in/orders.csv", ORDERS.encode())
    project(tmp_path, connection, root, prefix)
    assert run(tmp_path, monkeypatch).success
    written = sorted(fs.find(f"{bucket}/{prefix}/out"))
    data = [p.split("/out/", 1)[1] for p in written if p.endswith(".parquet")]
    assert [re.sub("--[0-9a-f]{8}_", "--", p) for p in data] == ["region=north/part--0.parquet"]
    assert json.loads(fs.cat(f"{bucket}/{prefix}/out/.memories-manifest"))["files"] == data  # the pipeline's own
    with fs.open(f"{bucket}/{prefix}/out/{data[0]}", "rb") as handle:
        assert sorted(pd.read_parquet(handle)["order_id"]) == [1, 3]
    before = {p: fs.cat(p) for p in written}
    # a run that fails (the source is gone) leaves the previous objects as they were
    fs.rm(f"{bucket}/{prefix}/in/orders.csv")
    result = run(tmp_path, monkeypatch)
    assert not result.success
    assert {p: fs.cat(p) for p in sorted(fs.find(f"{bucket}/{prefix}/out"))} == before


def test_an_unreachable_endpoint_is_a_clear_error(s3_store, tmp_path, monkeypatch):
    root, connection, fs = s3_store
    fs.pipe(f"lake/{tmp_path.name}/in/orders.csv", ORDERS.encode())
    project(tmp_path, {**connection, "endpoint_url": "http://127.0.0.1:1"}, root, tmp_path.name)
    result = run(tmp_path, monkeypatch)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "could not read source 'orders'" in failure.event_specific_data.error.message
