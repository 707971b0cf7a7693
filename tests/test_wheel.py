"""The wheel, as a user gets it: built once, installed into a folder of its own, and run from
outside the repository: `funcapprox search --stage nonarch --dry-run`, the console script,
and a tiny real search whose trials NNI starts as its own processes.

Every run uses the venv's interpreter (torch and nni are not reinstalled) with
PYTHONPATH=<site>: PYTHONPATH comes before the venv's site-packages, where the editable
install's finder would hand out the repository's copy. To prove the wheel is what ran,
not the repository, each run also carries an import probe (a sitecustomize.py on
PYTHONPATH after <site>) that logs, for every Python process started with that
environment, where each funcapprox module it imported was loaded from.

Nothing is written into the repository: the wheel is built from a copy of its sources,
because an in-tree setuptools build writes build/ and funcapprox.egg-info/ beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.nni import nni_workdir

from funcapprox.search.space import in_group_order

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable  # the venv's interpreter: scripts/test runs `.venv/bin/python -m pytest`
PROBE_LOG = "FUNCAPPROX_WHEEL_TEST_IMPORT_LOG"
# What a user's checkout holds besides the sources; none of it goes into a wheel.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                     ".pytest_cache", ".ruff_cache", ".hypothesis", "experiments", "runs")

# Loaded by every interpreter started with the test's PYTHONPATH (NNI's tuner, the launcher, the
# warm worker, every trial): a meta-path finder at the front that asks the finders behind it, exactly
# as the import system would, and appends one JSON line per funcapprox module to $PROBE_LOG.
PROBE = f'''
import json
import os
import sys


class _WhereFrom:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "funcapprox" and not name.startswith("funcapprox."):
            return None
        spec = None
        for finder in sys.meta_path[sys.meta_path.index(cls) + 1:]:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        line = json.dumps({{"pid": os.getpid(), "argv": sys.argv, "module": name,
                           "origin": spec.origin if spec is not None else None,
                           "trial": os.environ.get("NNI_TRIAL_JOB_ID")}})
        fd = os.open(os.environ["{PROBE_LOG}"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)
        return spec


sys.meta_path.insert(0, _WhereFrom)
'''


@dataclass(frozen=True)
class Built:
    source: Path  # the copy of the repository's sources the wheel was built from
    wheel: Path


@dataclass(frozen=True)
class Installed:
    site: Path  # pip install --target
    probe: Path  # the folder of the import probe's sitecustomize.py
    root: Path  # a folder outside the repository for this module's runs

    def env(self, log: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCAPPROX_") and k != "PYTHONPATH"}
        return {**env, "PYTHONPATH": f"{self.site}{os.pathsep}{self.probe}", PROBE_LOG: str(log)}

    def run(self, *args: str, log: Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        """`python -m funcapprox ARGS` with the wheel on PYTHONPATH, from `cwd`."""
        return subprocess.run([PYTHON, "-m", "funcapprox", *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(log), cwd=cwd)


def inside(path: str | Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def imports(log: Path) -> list[dict]:
    """The probe's records: one per funcapprox module a process imported, with where it came from."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def assert_all_from(site: Path, log: Path) -> list[dict]:
    """Every funcapprox module any process imported came from the installed wheel, none from the repo."""
    records = imports(log)
    assert records, "the import probe recorded nothing: the runs did not import funcapprox with its PYTHONPATH"
    from_repo = [r for r in records if r["origin"] and inside(r["origin"], REPO)]
    assert from_repo == [], "funcapprox was imported from the repository, not the wheel"
    elsewhere = [r for r in records if r["origin"] and not inside(r["origin"], site)]
    assert elsewhere == []
    return records


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    source = tmp_path_factory.mktemp("source") / "funcapprox"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES, symlinks=True)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(out), str(source)], capture_output=True, text=True, timeout=300,
                           cwd=out)
    assert build.returncode == 0, build.stderr + build.stdout
    (wheel,) = out.glob("funcapprox-*.whl")
    return Built(source, wheel)


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert not inside(root, REPO)
    site = root / "site"
    install = subprocess.run([PYTHON, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                              str(built.wheel)], capture_output=True, text=True, timeout=300, cwd=root)
    assert install.returncode == 0, install.stderr + install.stdout
    probe = root / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    return Installed(site, probe, root)


@pytest.fixture
def place(tmp_path_factory):
    """A fresh folder outside the repository to run in, and the import log of what runs there."""
    folder = tmp_path_factory.mktemp("cwd")
    assert not inside(folder, REPO)
    return folder, folder / "imports.jsonl"


def test_the_wheel_holds_the_sources_the_search_spaces_and_the_manager_preload_and_nothing_else(built):
    names = set(zipfile.ZipFile(built.wheel).namelist())
    spaces = sorted(p.name for p in (built.source / "search_spaces").glob("*.json"))
    assert spaces, "the sources hold no search space"
    for name in spaces:
        assert f"funcapprox/search_spaces/{name}" in names
    assert "funcapprox/nni/manager_preload.js" in names  # loaded into NNI's manager (nni/launch.py)
    # pyproject lists the packages and their data files by hand: a subpackage left off the list, or a
    # data file (CSS, JS, JSON) without its package-data entry, would be missing here.
    # And nothing else: an in-tree build reuses build/lib, where a module deleted from the sources
    # lingers and would be shipped (the reason this builds from a copy without build/).
    package = built.source / "funcapprox"
    files = {p.relative_to(built.source).as_posix() for p in package.rglob("*") if p.is_file()}
    expected = files | {f"funcapprox/search_spaces/{name}" for name in spaces}
    assert "funcapprox/cli.py" in files
    assert {n for n in names if n.startswith("funcapprox/")} == expected
    entry_points = zipfile.ZipFile(built.wheel).read("funcapprox-0.1.0.dist-info/entry_points.txt").decode()
    assert "funcapprox = funcapprox.cli:main" in entry_points


def test_the_installed_copy_is_the_one_python_imports(installed, place):
    cwd, log = place
    code = ("import json, funcapprox, funcapprox.search.space as space, funcapprox.nni.launch as launch; "
            "print(json.dumps([funcapprox.__file__, str(space.SPACES_DIR), str(launch.PRELOAD)]))")
    run = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                         env=installed.env(log), cwd=cwd)
    assert run.returncode == 0, run.stderr
    package, spaces, preload = json.loads(run.stdout)
    assert inside(package, installed.site) and not inside(package, REPO)
    assert Path(spaces) == installed.site / "funcapprox" / "search_spaces"
    assert Path(preload) == installed.site / "funcapprox" / "nni" / "manager_preload.js" and Path(preload).is_file()
    assert_all_from(installed.site, log)


def test_dry_run_uses_the_packaged_search_space(installed, place):
    cwd, log = place
    workdir = installed.root / "exp"
    run = installed.run("search", "--stage", "nonarch", "--dry-run", "--workdir", str(workdir), log=log, cwd=cwd)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "search_space.json: 180 grid points" in run.stdout
    assert "maxTrialNumber: 180" in run.stdout
    folder = workdir / ".dry-run" / "oscillator-nonarch"  # the default --func
    meta = json.loads((folder / "run.json").read_text())
    packaged = installed.site / "funcapprox" / "search_spaces" / "nonarch.json"
    assert Path(meta["space_source"]) == packaged and meta["grid_size"] == 180
    # the packaged space, put in the order its batched steps take the points
    assert json.loads((folder / "search_space.json").read_text()) == in_group_order(json.loads(packaged.read_text()))
    import yaml

    config = yaml.safe_load((folder / "config.yml").read_text())
    # NNI runs `python -m funcapprox.nni.trial` in trialCodeDirectory, and `-m` puts that folder first
    # on sys.path, before PYTHONPATH: a code directory in the repository would run the repository's copy.
    assert not inside(config["trialCodeDirectory"], REPO)
    assert config["trialCommand"].startswith(f"{PYTHON} -m funcapprox.nni.trial ")
    assert_all_from(installed.site, log)


def test_the_console_script_of_the_wheel_runs(installed, place):
    cwd, log = place
    script = installed.site / "bin" / "funcapprox"
    assert script.is_file()
    for args, expected in ((["--help"], "search"), (["--version"], "0.1.0")):
        run = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60,
                             env=installed.env(log), cwd=cwd)
        assert run.returncode == 0, run.stderr
        assert expected in run.stdout
    assert_all_from(installed.site, log)


@pytest.fixture
def workdir(tmp_path_factory):
    yield from nni_workdir(tmp_path_factory.mktemp("exp2"))


@pytest.mark.nni
def test_a_tiny_real_search_runs_its_trials_from_the_wheel(installed, place, workdir):
    cwd, log = place
    run = installed.run("search", "--stage", "nonarch", "--func", "square", "--max-trials", "2", "--epochs", "5",
                        "--workdir", str(workdir), log=log, cwd=cwd, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "finished" in run.stdout and "best trial" in run.stdout

    results = installed.run("results", "--format", "json", "--workdir", str(workdir), log=log, cwd=cwd)
    assert results.returncode == 0, results.stderr
    rows = json.loads(results.stdout)
    assert len(rows) == 2 and all(r["status"] == "SUCCEEDED" for r in rows)
    assert all(r["params"]["func"] == "square" and r["params"]["epochs"] == 5 for r in rows)
    table = installed.run("results", "--workdir", str(workdir), log=log, cwd=cwd)
    assert table.returncode == 0, table.stderr
    assert "stage nonarch, square, 2 succeeded" in table.stdout

    # The trials are processes NNI's manager started (with the environment it inherited). The probe
    # logged, in each of them, where `python -m funcapprox.nni.trial` was found, tagged with NNI's trial
    # id. Had PYTHONPATH been lost on the way, or a trial run from a folder holding the repository's
    # copy, the origin would be /work/main/funcapprox/nni/trial.py and this fails; a trial that never
    # started a Python with the probe would leave no record for its id.
    records = assert_all_from(installed.site, log)
    trial_imports = {r["trial"]: r["origin"] for r in records if r["module"] == "funcapprox.nni.trial" and r["trial"]}
    assert {r["trial_id"] for r in rows} <= set(trial_imports), trial_imports
    assert all(Path(o) == installed.site / "funcapprox" / "nni" / "trial.py" for o in trial_imports.values())
