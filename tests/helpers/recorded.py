"""The recorded experiment under tests/data/recorded: a work folder from a real NNI 3.0 run.

Tests read and write a private copy (copy_recorded), never the recording itself.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"

RECORDED = DATA / "recorded"  # a work folder holding one experiment recorded by a real NNI 3.0 run

RECORDED_ID = "wrxauyqz"

SUCCEEDED = ("ud7Qq", "wcNBM")  # Sigmoid lr 0.01 and Tanh lr 0.01

FAILED = ("njzKx", "E3Yy2")  # lr 1e6: diverged at epoch 5

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The recorded files name no folder of the machine they were recorded on: these placeholders
# stand where NNI wrote its work folder and the trial's interpreter, and a copy fills them in.
PLACEHOLDERS = ("@WORKDIR@", "@PYTHON@")

TEXT_FILES = ("funcapprox/run.json", "funcapprox/config.yml")

STORE_COLUMNS = {"TrialJobEvent": ("data", "logPath"), "ExperimentProfile": ("params", "logDir")}


def copy_recorded(tmp_path: Path, name: str = "workdir") -> Path:
    """A private copy of the recorded work folder, its placeholders pointing into the copy:
    tests read and write only the copy."""
    workdir = tmp_path / name
    shutil.copytree(RECORDED, workdir)
    values = dict(zip(PLACEHOLDERS, (str(workdir), sys.executable)))

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    for text_file in TEXT_FILES:
        path = workdir / RECORDED_ID / text_file
        path.write_text(fill(path.read_text()))
    with contextlib.closing(sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite")) as store, store:
        for table, columns in STORE_COLUMNS.items():
            for column in columns:
                store.execute(f"UPDATE {table} SET {column} = replace(replace({column}, ?, ?), ?, ?)",
                              [item for pair in values.items() for item in pair])
    (workdir / ".trial-code").mkdir(exist_ok=True)  # NNI's trialCodeDirectory, as the recording run had it
    return workdir


def trial_folder(workdir: Path, trial_id: str) -> Path:
    return workdir / RECORDED_ID / "environments" / "local-env" / "trials" / trial_id
