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
