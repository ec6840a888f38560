"""File outputs are the pipeline's own (issue 9 item 1) and a partition is replaced atomically,
for crashes and for readers (item 2). Oracles: the files a user put there, byte for byte, and
DuckDB/pyarrow reading the destination back as any reader would."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

from memories_dagster.connectors.file_outputs import (
    MANIFEST,
    DestinationError,
    Ownership,
    destination_problems,
    place_problem,
    protected_places,
)
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import OutputConfig

BY_CATEGORY = {"partition_by": "category", "partition_type": "category"}
CATEGORIES = ["tools", "garden", "kitchen", "toys", "books"]


def rows(ids: range, tag: str) -> pd.DataFrame:
    """Rows spread over every category, so one Dagster partition writes into every hive folder."""
    return pd.DataFrame({"id": list(ids), "category": [CATEGORIES[i % len(CATEGORIES)] for i in ids], "tag": tag})


def parquet(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def ids_in(folder: Path) -> set[int]:
    """The ids a reader finds in the destination (pyarrow's dataset discovery, as pandas uses)."""
    return set(ds.dataset(folder, format="parquet").to_table(columns=["id"]).column("id").to_pylist())


def leftovers(parent: Path) -> list[str]:
    return sorted(p for p in os.listdir(parent) if ".staging" in p or ".old-" in p)


# --- a destination is the pipeline's own ------------------------------------------------------


def test_a_folder_holding_files_the_pipeline_did_not_write_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "plan.txt").write_text("mine, not the pipeline's")
    (out / "readme.md").write_text("hello")
    config = OutputConfig(partitioning=BY_CATEGORY)
    with pytest.raises(DestinationError, match=r"holds 2 file\(s\) that pipeline 't' did not write .*notes/plan.txt.*overwrite: true"):
        write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "t")
    assert (out / "notes" / "plan.txt").read_text() == "mine, not the pipeline's"
    assert (out / "readme.md").read_text() == "hello"
    assert sorted(os.listdir(out)) == ["notes", "readme.md"]
    # a Dagster partition's run is refused just the same
    with pytest.raises(DestinationError):
        write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "t", Window("2024-01-01"))
    assert sorted(os.listdir(out)) == ["notes", "readme.md"]


def test_overwrite_true_takes_the_folder_over_and_then_it_is_the_pipelines(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.csv").write_text("x\n1\n")
    taken = OutputConfig(partitioning=BY_CATEGORY, overwrite=True)
    write_output(parquet(tmp_path, "a", rows(range(10), "a")), taken, str(out), "t")
    assert not (out / "old.csv").exists() and ids_in(out) == set(range(10))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["pipeline"] == "t"
    assert sorted(manifest["files"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    # from now on the files are the pipeline's: no overwrite needed
    write_output(parquet(tmp_path, "b", rows(range(20, 25), "b")), OutputConfig(partitioning=BY_CATEGORY), str(out), "t")
    assert ids_in(out) == set(range(20, 25))


def test_another_pipelines_folder_is_not_this_ones(tmp_path):
    out = tmp_path / "shared"
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "first")
    with pytest.raises(DestinationError, match="pipeline 'second' did not write .*manifest says pipeline 'first'"):
        write_output(parquet(tmp_path, "b", rows(range(5), "b")), config, str(out), "second")
    assert ids_in(out) == set(range(10))


def test_a_partition_run_keeps_the_other_partitions_and_replaces_only_its_own(tmp_path):
    out = tmp_path / "out"
    config = OutputConfig(partitioning=BY_CATEGORY)
    jan, feb = Window("2024-01"), Window("2024-02")
    write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, str(out), "t", jan)
    write_output(parquet(tmp_path, "f", rows(range(10, 20), "f")), config, str(out), "t", feb)
    write_output(parquet(tmp_path, "j2", rows(range(100, 103), "j2")), config, str(out), "t", jan)
    assert ids_in(out) == set(range(10, 20)) | {100, 101, 102}
    claimed = set(json.loads((out / MANIFEST).read_text())["files"])
    assert claimed == {p.relative_to(out).as_posix() for p in out.rglob("*.parquet")}


def test_a_single_file_the_pipeline_did_not_write_is_refused_and_kept(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("someone else's report\n")
    with pytest.raises(DestinationError, match="report.csv"):
        write_output(parquet(tmp_path, "a", rows(range(3), "a")), OutputConfig(output_format="csv"), str(target), "t")
    assert target.read_text() == "someone else's report\n"
    # with overwrite: true it is replaced, and claimed beside it
    write_output(parquet(tmp_path, "a", rows(range(3), "a")), OutputConfig(output_format="csv", overwrite=True), str(target), "t")
    assert sorted(pd.read_csv(target)["id"]) == [0, 1, 2]
    write_output(parquet(tmp_path, "b", rows(range(4), "b")), OutputConfig(output_format="csv"), str(target), "t")
    assert sorted(pd.read_csv(target)["id"]) == [0, 1, 2, 3]


def test_the_project_folder_is_never_a_destination(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "assets" / "integrations").mkdir(parents=True)
    (project / "assets" / "integrations" / "p.yaml").write_text("spec")
    integrated = parquet(tmp_path, "a", rows(range(10), "a"))
    monkeypatch.chdir(project)
    config = OutputConfig(partitioning=BY_CATEGORY, overwrite=True)  # overwrite does not lift it
    for destination in (".", str(project), str(tmp_path), "..", "./assets/.."):
        with pytest.raises(DestinationError, match="the current folder|the project folder"):
            write_output(integrated, config, destination, "t", ownership=Ownership("t", True, protected_places(project)))
    assert (project / "assets" / "integrations" / "p.yaml").read_text() == "spec"
    assert sorted(os.listdir(project)) == ["assets"]


@pytest.mark.parametrize("where, why", [
    ("/", "is the filesystem root"),
    ("~", "is the home folder"),
    ("~/..", "is a parent of the home folder"),
    ("{project}/.memories/storage", "is a storage folder"),
    ("{project}/.memories/storage/p/output", "is inside a storage folder"),
    ("{project}/.memories", "is a parent of a storage folder"),
    ("{dagster_home}/out", "is inside Dagster's home"),
])
def test_places_no_output_may_be(tmp_path, monkeypatch, where, why):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    project = tmp_path / "project"
    destination = os.path.expanduser(where.format(project=project, dagster_home=tmp_path / "dagster_home"))
    places = protected_places(project, [project / ".memories" / "storage"])
    assert why in (place_problem(destination, places) or "")
    assert place_problem(str(project / "output" / "p"), places) is None


def test_validate_repairs_a_killed_writes_leftovers_and_reports_foreign_files(tmp_path, no_grace):
    out = tmp_path / "out"
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "t")
    (tmp_path / ".staging-x1y2z3w4" / "tree").mkdir(parents=True)  # what runs before manifests left
    problems, repairs = destination_problems(str(out), Ownership("t"), folder=True)
    assert problems == [] and any(".staging-x1y2z3w4" in r for r in repairs)
    assert ids_in(out) == set(range(10)) and leftovers(tmp_path) == []
    (out / "stray.txt").write_text("x")
    problems, _ = destination_problems(str(out), Ownership("t"), folder=True)
    assert "stray.txt" in problems[0]


def test_a_destination_the_user_removed_is_not_brought_back(tmp_path):
    """Old trees are kept a while for readers; removing the destination is the user's doing, so
    neither a run of another partition nor memories validate puts an older version back."""
    out = tmp_path / "out"
    config = OutputConfig(partitioning=BY_CATEGORY)
    for tag in ("old", "new"):
        write_output(parquet(tmp_path, tag, rows(range(10), tag)), config, str(out), "t", Window("2024-01"))
    shutil.rmtree(out)
    assert destination_problems(str(out), Ownership("t"), folder=True) == ([], [])
    assert not out.exists()
    write_output(parquet(tmp_path, "feb", rows(range(100, 105), "feb")), config, str(out), "t", Window("2024-02"))
    assert ids_in(out) == set(range(100, 105))


def test_siblings_and_empty_folders_of_the_user_are_not_the_pipelines(tmp_path, no_grace):
    """Only names in the exact format the tool writes are its leftovers; an empty folder the user
    made inside the destination is foreign content like a file."""
    out = tmp_path / "out"
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "t")
    for name in (".out.old-mybackup", ".out.staging-mybackup", ".out.old-1234567890123456789-zzzzzzzz"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "precious.txt").write_text("keep")
    (out / "mine").mkdir()
    with pytest.raises(DestinationError, match="mine/"):
        write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "t")
    assert (out / "mine").is_dir()
    for name in (".out.old-mybackup", ".out.staging-mybackup", ".out.old-1234567890123456789-zzzzzzzz"):
        assert (tmp_path / name / "precious.txt").read_text() == "keep"


# --- a partition is replaced atomically: kill -9 at each step of the commit --------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    import memories_dagster.connectors.file_outputs as file_outputs
    from memories_dagster.engine.window import Window
    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    integrated, out, point = sys.argv[1], sys.argv[2], sys.argv[3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)

    def after(name, module, calls=1, then=None):
        real, seen = getattr(module, name), []
        def wrapped(*args, **kwargs):
            seen.append(1)
            if len(seen) == calls and then == "before":
                die()
            result = real(*args, **kwargs)
            if len(seen) == calls and then == "after":
                die()
            return result
        setattr(module, name, wrapped)

    if point == "while_linking":
        after("link", file_outputs.os, calls=3, then="before")
    elif point == "before_manifest":
        after("atomic_file", file_outputs, then="before")
    elif point == "before_swap":
        after("_swap", file_outputs, then="before")
    elif point == "after_exchange":
        after("exchange", file_outputs, then="after")
    elif point == "without_exchange_between_renames":  # a system without renameat2: two renames
        file_outputs.exchange = lambda first, second: False
        after("replace", file_outputs.os, calls=4, then="before")  # the manifest, the intent, the old tree away
    write_output(integrated, OutputConfig(partitioning={"partition_by": "category", "partition_type": "category"}),
                 out, "t", Window("2024-01"))
""")


def run_child(integrated: str, out: Path, point: str) -> int:
    return subprocess.run([sys.executable, "-c", CHILD, integrated, str(out), point], timeout=60).returncode


@pytest.fixture
def no_grace(monkeypatch):
    """Old trees removed at the next write however young (they are kept a while for readers)."""
    import memories_dagster.connectors.file_outputs as file_outputs

    monkeypatch.setattr(file_outputs, "OLD_TREE_SECONDS", -1)


@pytest.fixture
def two_partitions(tmp_path):
    """A destination holding January (old rows) and February; January's new rows staged."""
    out = tmp_path / "lake" / "orders"
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "jan_old", rows(range(0, 50), "old")), config, str(out), "t", Window("2024-01"))
    write_output(parquet(tmp_path, "feb", rows(range(1000, 1050), "feb")), config, str(out), "t", Window("2024-02"))
    new = parquet(tmp_path, "jan_new", rows(range(500, 540), "new"))
    old_rows, new_rows = set(range(0, 50)) | set(range(1000, 1050)), set(range(500, 540)) | set(range(1000, 1050))
    return out, new, old_rows, new_rows


@pytest.mark.parametrize("point, after_kill", [
    ("while_linking", "old"), ("before_manifest", "old"), ("before_swap", "old"),
    ("after_exchange", "new"), ("without_exchange_between_renames", "new"),
])
def test_a_commit_killed_at_any_step_leaves_the_complete_old_or_new_partition(two_partitions, no_grace, point, after_kill):
    out, new, old_rows, new_rows = two_partitions
    assert run_child(new, out, point) == -signal.SIGKILL
    # memories validate puts the destination right and removes what the killed write left
    problems, _ = destination_problems(str(out), Ownership("t"), folder=True)
    assert problems == [] and leftovers(out.parent) == []
    assert ids_in(out) == (old_rows if after_kill == "old" else new_rows)
    claimed = set(json.loads((out / MANIFEST).read_text())["files"])
    assert claimed == {p.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    # and so does the next run (of another partition), before it writes
    assert run_child(new, out, point) == -signal.SIGKILL
    write_output(str(out.parent.parent / "feb.parquet"), OutputConfig(partitioning=BY_CATEGORY), str(out), "t",
                 Window("2024-02"))
    assert ids_in(out) == (old_rows if after_kill == "old" else new_rows)
    assert [p for p in leftovers(out.parent) if ".staging" in p] == []


# --- a reader during commits sees the old or the new partition, never a mix --------------------

WRITER = textwrap.dedent("""
    import sys
    from memories_dagster.engine.window import Window
    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    out, versions, commits = sys.argv[1], sys.argv[2:4], int(sys.argv[4])
    config = OutputConfig(partitioning={"partition_by": "category", "partition_type": "category"})
    print("ready", flush=True)
    for n in range(commits):
        write_output(versions[n % 2], config, out, "t", Window("2024-01"))
""")


def test_a_reader_during_repeated_commits_never_sees_a_mix(two_partitions):
    """The reader opens the destination once and reads through that handle, as a reader that
    wants one version does: a swap never changes a tree in place, and the swapped-out tree stays
    whole for OLD_TREE_SECONDS. (Readers that look the path up again for every folder and file,
    e.g. a plain glob, can combine folders from both sides of a swap that happens mid-listing;
    POSIX has no snapshot of several folders, which is what output_format: delta is for.)"""
    out, new, old_rows, new_rows = two_partitions
    old = str(out.parent.parent / "jan_old.parquet")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out), new, old, "30"], stdout=subprocess.DEVNULL)
    seen = {"old": 0, "new": 0}
    try:
        while writer.poll() is None:
            handle = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
            try:
                found = set(duckdb.sql(f"SELECT id FROM read_parquet('/proc/self/fd/{handle}/*/*.parquet', "
                                       "hive_partitioning = false)").fetchnumpy()["id"].tolist())
            finally:
                os.close(handle)
            assert found in (old_rows, new_rows), f"a mix: {len(found & old_rows)} old and {len(found & new_rows)} new ids"
            seen["old" if found == old_rows else "new"] += 1
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert seen["old"] > 0 and seen["new"] > 0, seen  # the reader really ran during the commits


def test_kill_9_at_random_moments_of_repeated_commits_never_leaves_a_mix_or_nothing(two_partitions, no_grace):
    out, new, old_rows, new_rows = two_partitions
    old = str(out.parent.parent / "jan_old.parquet")
    for attempt in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out), new, old, "1000"], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(random.Random(attempt).uniform(0.05, 0.3))  # a few commits in, and into the next
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        problems, _ = destination_problems(str(out), Ownership("t"), folder=True)  # as memories validate does
        found = ids_in(out)
        assert problems == [] and found in (old_rows, new_rows), f"attempt {attempt}: {len(found)} rows"
        assert leftovers(out.parent) == []


# --- object stores: the same ownership rule through fsspec (moto's S3 server) -------------------


@pytest.fixture
def s3_target(s3_store, tmp_path):
    """(a destination on moto's S3 server, the Access that reaches it, an s3fs filesystem)."""
    from memories_dagster.engine.tables import Access
    from memories_dagster.factory.connections import _storage_options

    root, connection, fs = s3_store
    access = Access(storage_options=_storage_options("s3", {k: v for k, v in connection.items() if k != "type"}))
    return f"{root}/{tmp_path.name}/orders", access, fs


def test_s3_destination_keeps_a_manifest_replaces_only_its_partition_and_refuses_foreign_objects(s3_target, tmp_path):
    target, access, fs = s3_target
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, target, "t", Window("2024-01"), access=access)
    write_output(parquet(tmp_path, "f", rows(range(10, 20), "f")), config, target, "t", Window("2024-02"), access=access)
    write_output(parquet(tmp_path, "j2", rows(range(100, 103), "j2")), config, target, "t", Window("2024-01"), access=access)
    bucket_path = target.removeprefix("s3://")
    objects = sorted(f[len(bucket_path) + 1:] for f in fs.find(bucket_path))
    data = [f for f in objects if f.endswith(".parquet")]
    assert set(json.loads(fs.cat_file(f"{bucket_path}/{MANIFEST}"))["files"]) == set(data)
    assert not [f for f in objects if ".staging-" in f]
    found = set(pd.concat(pd.read_parquet(fs.open(f"{bucket_path}/{f}")) for f in data)["id"])
    assert found == set(range(10, 20)) | {100, 101, 102}
    fs.pipe_file(f"{bucket_path}/category=tools/theirs.parquet", b"someone else's")
    with pytest.raises(DestinationError, match="theirs.parquet"):
        write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, target, "t", Window("2024-01"), access=access)
    assert fs.cat_file(f"{bucket_path}/category=tools/theirs.parquet") == b"someone else's"


def test_s3_uploads_a_killed_write_left_are_removed_once_a_day_old(s3_target, tmp_path, monkeypatch):
    import memories_dagster.connectors.file_outputs as file_outputs

    target, access, fs = s3_target
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, target, "t", Window("2024-01"), access=access)
    upload = f"{target.removeprefix('s3://')}/.staging-0123456789ab/category=tools/x.parquet"
    fs.pipe_file(upload, b"half an upload")
    write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, target, "t", Window("2024-01"), access=access)
    assert fs.exists(upload)  # young: it may be another writer's upload in progress
    monkeypatch.setattr(file_outputs, "_UPLOAD_LEFT_BEHIND", -1)
    write_output(parquet(tmp_path, "j", rows(range(0, 10), "j")), config, target, "t", Window("2024-01"), access=access)
    fs.invalidate_cache()
    assert not fs.exists(upload)


def test_s3_single_file_is_claimed_beside_it_and_a_foreign_one_refused(s3_target, tmp_path):
    target, access, fs = s3_target
    csv = OutputConfig(output_format="csv")
    write_output(parquet(tmp_path, "a", rows(range(3), "a")), csv, f"{target}.csv", "t", access=access)
    write_output(parquet(tmp_path, "b", rows(range(4), "b")), csv, f"{target}.csv", "t", access=access)
    path = f"{target.removeprefix('s3://')}.csv"
    assert sorted(pd.read_csv(fs.open(path))["id"]) == [0, 1, 2, 3]
    fs.pipe_file(f"{path}.theirs.csv", b"x\n1\n")
    with pytest.raises(DestinationError, match="theirs.csv"):
        write_output(parquet(tmp_path, "a", rows(range(3), "a")), csv, f"{target}.csv.theirs.csv", "t", access=access)
    assert fs.cat_file(f"{path}.theirs.csv") == b"x\n1\n"


def test_a_swapped_out_tree_is_kept_for_readers_then_removed(tmp_path, monkeypatch):
    import memories_dagster.connectors.file_outputs as file_outputs

    out = tmp_path / "out"
    config = OutputConfig(partitioning=BY_CATEGORY)
    for version in range(3):
        write_output(parquet(tmp_path, "a", rows(range(version, 10), "a")), config, str(out), "t")
    kept = [p for p in os.listdir(tmp_path) if p.startswith(".out.old-")]
    assert len(kept) == 2  # the trees of the last minute, each whole: a reader may still list them
    assert all(ids_in(tmp_path / p) in (set(range(0, 10)), set(range(1, 10))) for p in kept)
    monkeypatch.setattr(file_outputs, "OLD_TREE_SECONDS", -1)
    write_output(parquet(tmp_path, "a", rows(range(3, 10), "a")), config, str(out), "t")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out.old-")] == [sorted(
        p for p in os.listdir(tmp_path) if p.startswith(".out.old-"))[0]]  # only this write's own
    assert ids_in(out) == set(range(3, 10))


def test_a_folder_output_is_readable_by_others_as_the_umask_allows(tmp_path):
    out = tmp_path / "out"
    old_mask = os.umask(0o022)
    try:
        write_output(parquet(tmp_path, "a", rows(range(10), "a")), OutputConfig(partitioning=BY_CATEGORY), str(out), "t")
    finally:
        os.umask(old_mask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)  # what mkdir gives under umask 022


def test_a_destination_that_is_a_symlink_is_written_where_it_points_and_stays_a_link(tmp_path, no_grace):
    """r8: the link was swapped out for a real folder, and the data left behind the link."""
    real = tmp_path / "disk" / "orders"
    real.mkdir(parents=True)
    out = tmp_path / "out"
    out.symlink_to(real, target_is_directory=True)
    config = OutputConfig(partitioning=BY_CATEGORY)
    for version in range(2):
        write_output(parquet(tmp_path, "a", rows(range(version, 10), "a")), config, str(out), "t")
    assert out.is_symlink() and os.readlink(out) == str(real)
    assert ids_in(real) == set(range(1, 10))


def test_an_output_inside_or_around_another_output_is_refused_and_validate_leaves_no_lock_there(tmp_path):
    """r2: the outer pipeline's next full run would drop the inner output (or, with overwrite, the
    outer would take the inner's files over)."""
    config = OutputConfig(partitioning=BY_CATEGORY)
    data = parquet(tmp_path, "a", rows(range(10), "a"))
    write_output(data, config, str(tmp_path / "lake" / "outer"), "outer")
    inner = tmp_path / "lake" / "outer" / "inner"
    with pytest.raises(DestinationError, match="is inside the output"):
        write_output(data, config, str(inner), "inner")
    problems, _ = destination_problems(str(inner), Ownership("inner"), folder=True)
    assert "is inside the output" in problems[0]
    assert sorted(p.name for p in (tmp_path / "lake" / "outer").iterdir() if p.name.startswith(".")) == [MANIFEST]
    write_output(data, config, str(tmp_path / "around" / "inner"), "inner")
    with pytest.raises(DestinationError, match="holds an output"):
        write_output(data, OutputConfig(partitioning=BY_CATEGORY, overwrite=True), str(tmp_path / "around"), "outer",
                     ownership=Ownership("outer", overwrite=True))
    assert ids_in(tmp_path / "around" / "inner") == set(range(10))


def test_a_same_named_pipeline_of_another_project_does_not_take_the_output_over(tmp_path):
    """r4: ownership was the bare pipeline name; the manifest also names the project folder."""
    out = tmp_path / "shared" / "orders"
    config = OutputConfig(partitioning=BY_CATEGORY)
    write_output(parquet(tmp_path, "a", rows(range(10), "a")), config, str(out), "orders",
                 ownership=Ownership("orders", project=str(tmp_path / "one")))
    with pytest.raises(DestinationError, match="of the project .*one wrote them"):
        write_output(parquet(tmp_path, "b", rows(range(900, 905), "b")), config, str(out), "orders",
                     ownership=Ownership("orders", project=str(tmp_path / "two")))
    problems, _ = destination_problems(str(out), Ownership("orders", project=str(tmp_path / "two")), folder=True)
    assert "did not write" in problems[0]
    assert ids_in(out) == set(range(10))
    write_output(parquet(tmp_path, "c", rows(range(5), "c")), config, str(out), "orders",
                 ownership=Ownership("orders", project=str(tmp_path / "one")))
    assert ids_in(out) == set(range(5))
