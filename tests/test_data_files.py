"""Recorded test data must hold no folder of the machine it was recorded on: a fresh machine
(CI's) does not have them, and a test that passes only where they exist proves nothing."""

from __future__ import annotations

import re

from helpers.recorded import DATA, PLACEHOLDERS, RECORDED_ID, copy_recorded

ABSOLUTE = re.compile(rb"(^|[^A-Za-z0-9_.@])/(tmp|home|root|work|usr|opt|var|srv|mnt)/")


def test_no_file_under_tests_data_names_an_absolute_folder():
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert files
    offending = [str(p.relative_to(DATA)) for p in files if ABSOLUTE.search(p.read_bytes())]
    assert offending == []


def test_a_copy_fills_the_placeholders_in_with_its_own_folder(tmp_path):
    workdir = copy_recorded(tmp_path)
    for path in (workdir / RECORDED_ID).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(p.encode() in data for p in PLACEHOLDERS), path
    assert str(workdir).encode() in (workdir / RECORDED_ID / "db" / "nni.sqlite").read_bytes()
    assert str(workdir).encode() in (workdir / RECORDED_ID / "funcapprox" / "config.yml").read_bytes()
