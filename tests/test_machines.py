"""machines.yml for NNI's remote (SSH) training service: what is accepted, what each mistake says, the
config NNI gets; and, marked nni, a real experiment whose trials run over SSH on a throw-away sshd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sshd import ssh_server
from test_e2e_nni import nni_processes, workdir  # noqa: F401 (workdir is a fixture)

from funcapprox.artifacts import write_json
from funcapprox.errors import ConfigError, ExperimentError, FuncApproxError
from funcapprox.machines import (
    CODE_PLACEHOLDER,
    Machine,
    check_machine,
    fetch_trials,
    is_loopback,
    load_machines,
    manager_ip_for,
    prepare_code_dir,
    remote_training_service,
    trial_python,
)

VENV_PYTHON = "/opt/venv/bin/python"


def keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """A folder with a plain key (id), a passphrase-protected one (locked), and their .pub halves."""
    folder = tmp_path_factory.mktemp("keys")
    keygen(folder / "id")
    keygen(folder / "locked", passphrase="secret words")
    return folder


def entry(keys: Path, **fields) -> dict:
    return {"host": "hosta", "user": "alice", "sshKeyFile": str(keys / "id"), "python": VENV_PYTHON, **fields}


def write_machines(tmp_path: Path, data, name: str = "machines.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# --- accepted files -------------------------------------------------------------------------------


def test_a_list_of_machines_becomes_nni_machine_list(tmp_path, keys):
    path = write_machines(tmp_path, [entry(keys), entry(keys, host="10.0.0.7", port=2222, user="bob")])
    machines = load_machines(path)
    assert machines == [
        Machine(host="hosta", user="alice", key_file=keys / "id", python=VENV_PYTHON, port=22),
        Machine(host="10.0.0.7", user="bob", key_file=keys / "id", python=VENV_PYTHON, port=2222),
    ]
    assert machines[1].to_nni() == {"host": "10.0.0.7", "port": 2222, "user": "bob",
                                    "sshKeyFile": str(keys / "id"), "pythonPath": "/opt/venv/bin"}
    assert remote_training_service(machines) == {
        "platform": "remote", "reuseMode": False, "machineList": [m.to_nni() for m in machines]}
    assert remote_training_service(machines, manager_ip="10.0.0.1")["nniManagerIp"] == "10.0.0.1"
    assert trial_python(machines) == VENV_PYTHON


def test_the_machines_mapping_form_and_reuse(tmp_path, keys):
    path = write_machines(tmp_path, {"machines": [entry(keys, reuse=True)]})
    (machine,) = load_machines(path)
    assert machine.reuse and remote_training_service([machine])["reuseMode"] is True


@pytest.mark.parametrize(("python", "interpreter", "folder"), [
    ("/opt/venv/bin/python", "/opt/venv/bin/python", "/opt/venv/bin"),
    ("/usr/bin/python3.11", "/usr/bin/python3.11", "/usr/bin"),
    ("/opt/venv/bin", "/opt/venv/bin/python3", "/opt/venv/bin"),  # a folder: NNI wants it, trials its python3
    ("/opt/venv/bin/", "/opt/venv/bin/python3", "/opt/venv/bin"),
])
def test_python_is_an_interpreter_or_its_folder(tmp_path, keys, python, interpreter, folder):
    (machine,) = load_machines(write_machines(tmp_path, [entry(keys, python=python)]))
    assert machine.python == interpreter and machine.to_nni()["pythonPath"] == folder


def test_key_file_paths_expand_home_and_start_from_the_machines_file(tmp_path, keys, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(keys / "id", home / ".ssh" / "id_ed25519")
    monkeypatch.setenv("HOME", str(home))
    shutil.copy(keys / "id", tmp_path / "beside")
    path = write_machines(tmp_path, [entry(keys, sshKeyFile="~/.ssh/id_ed25519"),
                                     entry(keys, host="hostb", sshKeyFile="beside")])
    assert [m.key_file for m in load_machines(path)] == [home / ".ssh" / "id_ed25519", tmp_path / "beside"]


def test_the_remote_service_validates_with_nni(tmp_path, keys):
    from funcapprox.nniconfig import experiment_config, trial_command, validate_with_nni

    machines = load_machines(write_machines(tmp_path, [entry(keys), entry(keys, host="hostb")]))
    config = experiment_config(name="remote", search_space={"learning_rate": {"_type": "choice", "_value": [0.01]}},
                               command=trial_command({"func": "square"}, python=trial_python(machines)),
                               code_dir=tmp_path, workdir=tmp_path / "exp")
    config["trainingService"] = remote_training_service(machines, manager_ip="10.0.0.1")
    validate_with_nni(config)
    assert config["trialCommand"].startswith(f"{VENV_PYTHON} -m funcapprox.trial ")


# --- mistakes, one message each -------------------------------------------------------------------


def bad(keys: Path, tmp_path: Path, **fields) -> list:
    """Two machines, the second (hostb) with `fields` on top; a value None removes the field."""
    second = {k: v for k, v in {**entry(keys, host="hostb"), **fields}.items() if v is not None}
    return [entry(keys), second]


@pytest.mark.parametrize(("fields", "message"), [
    ({"host": None}, "machine 2: host is missing"),
    ({"user": None}, "machine 2 (hostb): user is missing"),
    ({"sshKeyFile": None}, "machine 2 (hostb): sshKeyFile is missing"),
    ({"python": None}, "machine 2 (hostb): python is missing"),
    ({"host": "two words"}, "machine 2 (two words): host must be a name without spaces, not 'two words'"),
    ({"user": 7}, "machine 2 (hostb): user must be a name without spaces, not 7"),
    ({"port": "22x"}, "machine 2 (hostb): port must be a whole number from 1 to 65535, not '22x'"),
    ({"port": 0}, "machine 2 (hostb): port must be a whole number from 1 to 65535, not 0"),
    ({"port": 70000}, "machine 2 (hostb): port must be a whole number from 1 to 65535, not 70000"),
    ({"port": True}, "machine 2 (hostb): port must be a whole number from 1 to 65535, not True"),
    ({"reuse": "yes"}, "machine 2 (hostb): reuse must be true or false, not 'yes'"),
    ({"gpus": 2}, "machine 2 (hostb): unknown field 'gpus': known fields: host, port, user, sshKeyFile, python, "
                  "reuse"),
    ({"pythonPath": "/opt/venv/bin"}, "machine 2 (hostb): unknown field 'pythonPath': write python: the "
                                      "interpreter's full path (or its bin folder) on that machine"),
    ({"password": "hunter2"}, "machine 2 (hostb): unknown field 'password': funcapprox takes SSH key files only"),
    ({"sshPassphrase": "x"}, "machine 2 (hostb): unknown field 'sshPassphrase': use a key without passphrase"),
    ({"python": "venv/bin/python"}, "machine 2 (hostb): python must be an absolute path on hostb without spaces "
                                    "or shell characters, like /home/alice/venv/bin/python; got 'venv/bin/python'"),
    ({"python": "~/venv/bin/python"}, "machine 2 (hostb): python must be an absolute path on hostb"),
    ({"python": "/opt/my venv/bin/python"}, "machine 2 (hostb): python must be an absolute path on hostb"),
    ({"python": "/opt/venv/bin/python;rm"}, "machine 2 (hostb): python must be an absolute path on hostb"),
])
def test_each_bad_field_names_the_machine_and_the_field(tmp_path, keys, fields, message):
    path = write_machines(tmp_path, bad(keys, tmp_path, **fields))
    with pytest.raises(ConfigError) as error:
        load_machines(path)
    assert str(error.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(("key", "problem"), [
    ("missing", "{key} does not exist"),
    ("folder", "{key} is not a file"),
    ("id.pub", "{key} is not an SSH private key (that is the public half; give the file without .pub)"),
    ("notes.txt", "{key} is not an SSH private key"),
    ("locked", "{key} is protected by a passphrase; use a key without one (ssh-keygen -N '')"),
])
def test_key_files_that_cannot_log_in(tmp_path, keys, key, problem):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a key\n")
    key_path = keys / key if (keys / key).exists() else tmp_path / key
    path = write_machines(tmp_path, bad(keys, tmp_path, sshKeyFile=str(key_path)))
    with pytest.raises(ConfigError) as error:
        load_machines(path)
    assert str(error.value) == f"{path}: machine 2 (hostb): sshKeyFile {problem.format(key=key_path)}"


def test_an_unreadable_key_file(tmp_path, keys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key = tmp_path / "id"
    shutil.copy(keys / "id", key)
    key.chmod(0)
    path = write_machines(tmp_path, bad(keys, tmp_path, sshKeyFile=str(key)))
    with pytest.raises(ConfigError, match=r"machine 2 \(hostb\): sshKeyFile .* is not readable"):
        load_machines(path)


def test_machines_must_share_one_python_and_one_reuse_mode(tmp_path, keys):
    path = write_machines(tmp_path, bad(keys, tmp_path, python="/home/bob/venv/bin/python"))
    with pytest.raises(ConfigError) as error:
        load_machines(path)
    assert str(error.value) == (
        f"{path}: machine 2 (hostb) has python /home/bob/venv/bin/python, machine 1 (hosta) has /opt/venv/bin/python; "
        "NNI runs one trial command on every machine, so all must use the same path (a symlink or the same venv "
        "location on each)")
    path = write_machines(tmp_path, bad(keys, tmp_path, reuse=True))
    with pytest.raises(ConfigError, match=r"machine 2 \(hostb\) has reuse true, machine 1 \(hosta\) false; NNI's "
                                          "reuseMode is one for all machines"):
        load_machines(path)


def test_the_same_machine_twice(tmp_path, keys):
    path = write_machines(tmp_path, [entry(keys), entry(keys, port=22)])
    with pytest.raises(ConfigError) as error:
        load_machines(path)
    assert str(error.value) == f"{path}: machine 2 (hosta) repeats machine 1 (alice@hosta:22)"


@pytest.mark.parametrize(("text", "message"), [
    ("", "{path} lists no machines: write a YAML list of machines, each with host, user, sshKeyFile, python"),
    ("[]", "{path} lists no machines"),
    ("machines: []", "{path} lists no machines"),
    ("host: hosta\n", "{path}: unknown key 'host' at the top; write a list of machines, or machines: [...]"),
    ("- hosta\n", "{path}: machine 1: expected a mapping with host, user, sshKeyFile, python; got str 'hosta'"),
    ("- host: [a\n", "{path} is not valid YAML (line 2)"),
])
def test_files_that_are_not_a_machine_list(tmp_path, text, message):
    path = write_machines(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_machines(path)
    assert str(error.value).startswith(message.format(path=path))


def test_a_missing_machines_file(tmp_path):
    with pytest.raises(ConfigError, match="the machines file .*nowhere.yml does not exist"):
        load_machines(tmp_path / "nowhere.yml")


def test_machines_built_in_code_are_checked_too(keys):
    a = Machine("a", "u", keys / "id", "/x/bin/python")
    with pytest.raises(ConfigError, match="lists no machines"):
        trial_python([])
    with pytest.raises(ConfigError, match=r"machine 2 \(b\) has python /y/bin/python"):
        remote_training_service([a, Machine("b", "u", keys / "id", "/y/bin/python")])


def test_manager_ip_is_needed_only_off_this_computer(keys):
    assert is_loopback("localhost") and is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.7") and not is_loopback("gpu1.lab")
    assert manager_ip_for([Machine("127.0.0.1", "u", keys / "id", "/x/python")]) is None


def test_the_trial_code_folder_is_never_empty(tmp_path):
    empty = prepare_code_dir(tmp_path / "code")
    assert [p.name for p in empty.iterdir()] == [CODE_PLACEHOLDER]
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "train.py").write_text("")
    assert [p.name for p in prepare_code_dir(tmp_path / "own").iterdir()] == ["train.py"]


# --- over SSH, against a throw-away sshd (no NNI) -----------------------------------------------


def fake_python(folder: Path, script: str) -> str:
    path = folder / "python"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_check_machine_logs_in_and_finds_what_trials_need(tmp_path, keys):
    known_hosts = tmp_path / "known_hosts"
    with ssh_server(tmp_path / "sshd") as server:
        def machine(python: str, key: Path = server.key_file) -> Machine:
            return Machine(server.host, server.user, key, python, server.port)

        check_machine(machine(sys.executable), known_hosts)  # this venv has nni, torch and funcapprox
        found = subprocess.run(["ssh-keygen", "-F", f"[{server.host}]:{server.port}", "-f", str(known_hosts)],
                               capture_output=True, text=True)
        assert found.returncode == 0, "the new host key was not remembered"
        with pytest.raises(ExperimentError, match=f"{tmp_path}/python on 127.0.0.1 lacks nni, torch: install"):
            check_machine(machine(fake_python(tmp_path, "echo nni torch")), known_hosts)
        with pytest.raises(ExperimentError, match="/nowhere/bin/python does not run on 127.0.0.1: .*No such file"):
            check_machine(machine("/nowhere/bin/python"), known_hosts)
        with pytest.raises(ExperimentError, match=rf"cannot log in to {server.user}@127.0.0.1:{server.port} with "
                                                  ".*other: .*Permission denied"):
            check_machine(machine(sys.executable, keygen(tmp_path / "other")), known_hosts)


def test_fetch_trials_from_machines_that_ran_none(tmp_path, workdir):  # noqa: F811 (workdir is a fixture)
    (workdir / "nosuchexp").mkdir(parents=True)
    with ssh_server(tmp_path / "sshd") as server:
        machine = Machine(server.host, server.user, server.key_file, sys.executable, server.port)
        assert fetch_trials([machine], workdir, "nosuchexp", known_hosts=tmp_path / "known_hosts") == []
        with pytest.raises(ConfigError, match="supported for reuse: false only"):
            fetch_trials([Machine(server.host, server.user, server.key_file, sys.executable, server.port, reuse=True)],
                         workdir, "nosuchexp")
        with pytest.raises(ExperimentError, match="no experiment folder .*elsewhere"):
            fetch_trials([machine], workdir, "elsewhere")


# --- a real experiment over SSH -----------------------------------------------------------------

FIXED = {"func": "square", "hidden": (16, 16, 16), "epochs": 5}
SPACE = {"learning_rate": {"_type": "choice", "_value": [0.005, 0.01]}}


@pytest.mark.nni
def test_a_real_experiment_runs_its_trials_over_ssh(workdir, tmp_path):  # noqa: F811 (workdir is a fixture)
    from funcapprox.experiment import Launched, free_port, nnictl_path, stop, wait
    from funcapprox.figures import plot_trial
    from funcapprox.nniconfig import experiment_config, to_yaml, trial_command
    from funcapprox.results import META_DIR, META_FILE, load_experiment

    with ssh_server(tmp_path / "sshd") as server:
        path = write_machines(tmp_path, [{"host": server.host, "port": server.port, "user": server.user,
                                          "sshKeyFile": str(server.key_file), "python": sys.executable}])
        machines = load_machines(path)
        config = experiment_config(
            name="funcapprox remote test", search_space=SPACE, workdir=workdir, max_trials=2,
            code_dir=prepare_code_dir(tmp_path / "code"),  # NNI's upload fails on an empty folder
            command=trial_command(FIXED, python=trial_python(machines)))  # no --warm: its socket is local
        config["trainingService"] = remote_training_service(machines)
        (tmp_path / "config.yml").write_text(to_yaml(config))
        port = free_port()
        started = time.monotonic()
        created = subprocess.run([nnictl_path(), "create", "--config", str(tmp_path / "config.yml"), "--port",
                                  str(port)], capture_output=True, text=True, timeout=180)
        match = re.search(r"Experiment ID: (?:\x1b\[[0-9;]*m)?([A-Za-z0-9]+)", created.stdout + created.stderr)
        assert created.returncode == 0 and match, created.stdout + created.stderr
        exp_id = match.group(1)
        remote_folder = Path.home() / "nni-experiments" / exp_id  # the "remote" side: this computer's ~
        try:
            (workdir / exp_id / META_DIR).mkdir(parents=True, exist_ok=True)  # funcapprox's record: results reads it
            write_json(workdir / exp_id / META_DIR / META_FILE, {"id": exp_id, "stage": "nonarch", "fixed": FIXED,
                                                                 "created": time.time()})
            status = wait(Launched(exp_id, port, workdir / exp_id), workdir, poll=1)
            print(f"remote experiment {exp_id}: {status} after {time.monotonic() - started:.1f} s")
            assert status == "DONE"
            experiment = load_experiment(workdir, exp_id)
            # What NNI's database alone gives: statuses, parameters, final metrics and the metric history.
            assert sorted(t.params["lr"] for t in experiment.trials) == [0.005, 0.01]
            assert all(t.status == "SUCCEEDED" and t.metric is not None and t.n_params == 593 and t.history
                       for t in experiment.trials), experiment.trials
            # The trials' own files stay on the machine: ~/nni-experiments/<id>/environments/remote-worker1/.
            for t in experiment.trials:
                assert t.output_dir == workdir / exp_id / "environments" / "remote-worker1" / "trials" / t.trial_id
                assert not t.output_dir.exists()
                assert (remote_folder / "environments" / "remote-worker1" / "trials" / t.trial_id / "model.pt").exists()
            with pytest.raises(FuncApproxError, match="no saved weights .*add --retrain"):
                plot_trial(workdir, exp_id, "best", out=tmp_path / "best.png")

            fetched = fetch_trials(machines, workdir, exp_id, known_hosts=tmp_path / "known_hosts")
            assert sorted(f.name for f in fetched) == sorted(t.trial_id for t in experiment.trials)
            experiment = load_experiment(workdir, exp_id)
            assert all((t.output_dir / "model.pt").exists() and (t.output_dir / "parameters.json").exists()
                       for t in experiment.trials)
            paths = plot_trial(workdir, exp_id, "best", out=tmp_path / "best.png")
            assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
        finally:
            stop(exp_id, workdir)
            if remote_folder.is_dir() and workdir.resolve() != remote_folder.parent.resolve():
                shutil.rmtree(remote_folder)
    assert not nni_processes(workdir)
    assert not subprocess.run(["pgrep", "-f", f"trial_keeper.*{exp_id}"], capture_output=True).stdout
