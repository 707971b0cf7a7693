"""Files funcapprox writes are atomic: a process killed mid-write leaves the old file or the new one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

WRITER = """
import sys
from funcapprox.artifacts import write_json
path, n = sys.argv[1], 0
while True:  # two versions, each large enough that a write takes a while
    n += 1
    write_json(path, {"version": n % 2, "payload": [n % 2] * 200_000})
"""


def test_a_writer_killed_at_random_moments_never_leaves_a_half_written_file(tmp_path):
    path = tmp_path / "run.json"
    for delay in (0.01, 0.05, 0.1, 0.2, 0.35):
        path.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        while not path.exists():  # the writer is up and has written once
            time.sleep(0.01)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = json.loads(path.read_text())  # whole: a half-written file would not parse
        assert set(data["payload"]) == {data["version"]} and len(data["payload"]) == 200_000
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(name.startswith(".") for name in leftovers)  # at most the killed writer's temporary files


def test_claimed_folders_are_never_shared(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from funcapprox.artifacts import claim_folder

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: claim_folder(tmp_path / "runs", "square-x"), range(24)))
    assert len(set(folders)) == 24
    assert sorted(p.name for p in folders) == sorted(["square-x", *(f"square-x-{n}" for n in range(2, 25))])


def test_atomic_write_without_replace_keeps_an_existing_file(tmp_path):
    import pytest

    from funcapprox.artifacts import atomic_write

    path = tmp_path / "report.html"
    atomic_write(path, "first", replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(path, "second", replace=False)
    assert path.read_text() == "first"
    atomic_write(path, "third")
    assert path.read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left


def test_a_failed_run_in_a_staging_folder_leaves_the_destination_alone(tmp_path):
    import pytest

    from funcapprox.artifacts import staged_folder

    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(dest, force=True) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and [p.name for p in dest.iterdir()] == ["old.txt"]

    with staged_folder(dest, force=True) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".run.staging-")
        (staging / "new.txt").write_text("new")
        assert (dest / "old.txt").exists()  # the earlier run stays whole until the new one is
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and [p.name for p in dest.iterdir()] == ["new.txt"]


def test_files_appearing_in_the_destination_during_a_run_are_kept_and_so_is_the_run(tmp_path):
    import pytest

    from funcapprox.artifacts import staged_folder
    from funcapprox.errors import FuncApproxError

    dest = tmp_path / "run"
    with pytest.raises(FuncApproxError, match=r"run was written to while this run trained, so the run was saved in "
                                              r".*run-2$"):
        with staged_folder(dest) as staging:
            (staging / "new.txt").write_text("new")
            dest.mkdir()
            (dest / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run-2"]
    assert [p.name for p in dest.iterdir()] == ["theirs.txt"]
    assert [p.name for p in (tmp_path / "run-2").iterdir()] == ["new.txt"]
