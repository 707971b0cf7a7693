"""machines.yml for NNI's remote (SSH) training service: what is accepted, what each mistake says, the
config NNI gets; and, marked nni, a real experiment whose trials run over SSH on a throw-away sshd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.nni import nni_workdir
from helpers.sshd import ssh_server

from funcapprox.errors import ConfigError, ExperimentError
from funcapprox.nni.remote import (
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


@pytest.fixture
def workdir(tmp_path):
    """A work folder whose NNI experiments are all stopped afterwards."""
    yield from nni_workdir(tmp_path)


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
    from funcapprox.nni.config import experiment_config, trial_command, validate_with_nni

    machines = load_machines(write_machines(tmp_path, [entry(keys), entry(keys, host="hostb")]))
    config = experiment_config(name="remote", search_space={"learning_rate": {"_type": "choice", "_value": [0.01]}},
                               command=trial_command({"func": "square"}, python=trial_python(machines)),
                               code_dir=tmp_path, workdir=tmp_path / "exp")
    config["trainingService"] = remote_training_service(machines, manager_ip="10.0.0.1")
    validate_with_nni(config)
    assert config["trialCommand"].startswith(f"{VENV_PYTHON} -m funcapprox.nni.trial ")


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


def test_fetch_trials_from_machines_that_ran_none(tmp_path, workdir):
    (workdir / "nosuchexp").mkdir(parents=True)
    with ssh_server(tmp_path / "sshd") as server:
        machine = Machine(server.host, server.user, server.key_file, sys.executable, server.port)
        assert fetch_trials([machine], workdir, "nosuchexp", known_hosts=tmp_path / "known_hosts") == []
        with pytest.raises(ConfigError, match="supported for reuse: false only"):
            fetch_trials([Machine(server.host, server.user, server.key_file, sys.executable, server.port, reuse=True)],
                         workdir, "nosuchexp")
        with pytest.raises(ExperimentError, match="no experiment folder .*elsewhere"):
            fetch_trials([machine], workdir, "elsewhere")


@pytest.fixture
def remote_experiment(tmp_path):
    """(id, the "remote" machine's experiment folder, the local one): the sshd logs in as this user, so the
    machine's ~/nni-experiments/<id> is on this computer; removed afterwards."""
    import uuid

    exp_id = f"fetch{uuid.uuid4().hex[:10]}"
    remote = Path.home() / "nni-experiments" / exp_id
    local = tmp_path / "work" / exp_id
    for rel, data in {"db/nni.sqlite": b"SQLite format 3\0the store", "funcapprox/run.json": b'{"stage": "x"}',
                      "log/nnimanager.log": b"log\n"}.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    try:
        yield exp_id, remote, local
    finally:
        shutil.rmtree(remote, ignore_errors=True)


def remote_trial(remote: Path, trial: str = "AbC12", worker: int = 1) -> Path:
    folder = remote / "environments" / f"remote-worker{worker}" / "trials" / trial
    (folder / ".nni").mkdir(parents=True)
    return folder


def test_fetch_trials_streams_each_machines_trials_over_ssh(tmp_path, remote_experiment, monkeypatch):
    from helpers.files import snapshot

    import funcapprox.nni.remote as machines

    exp_id, remote, local = remote_experiment
    weights = os.urandom(3 * 2**20)  # many pipe reads
    trial = remote_trial(remote)
    (trial / "model.pt").write_bytes(weights)
    (trial / "config.json").write_text('{"lr": 0.01}')
    (trial / "config.json").chmod(0o4755)  # setuid on the machine: not here
    (trial / ".nni" / "metrics").write_bytes(b"ME00000010")
    (remote_trial(remote, "Xy_9-z", worker=3) / "trial.stdout").write_text("out\n")  # a restarted worker
    (remote / "environments" / "remote-worker1" / "upload").mkdir()  # not a trial's: not fetched
    (remote / "environments" / "remote-worker1" / "upload" / "code.tgz").write_bytes(b"x")
    (remote / "db").mkdir()
    (remote / "db" / "nni.sqlite").write_bytes(b"the machine's own")
    untouched = snapshot(local)
    known_hosts = tmp_path / "known_hosts"
    with ssh_server(tmp_path / "sshd") as server:
        machine = Machine(server.host, server.user, server.key_file, sys.executable, server.port)
        monkeypatch.setattr(machines, "MAX_ARCHIVE_BYTES", 2**20)
        with pytest.raises(ExperimentError, match=f"refused the trial files of {exp_id} from {server.user}@127.0.0.1:"
                                                  f"{server.port}: the archive is over the limit of 1 MiB; "
                                                  "nothing was written"):
            fetch_trials([machine], tmp_path / "work", exp_id, known_hosts=known_hosts)
        assert snapshot(local) == untouched
        monkeypatch.undo()

        old = os.umask(0o022)
        try:
            fetched = fetch_trials([machine], tmp_path / "work", exp_id, known_hosts=known_hosts)
        finally:
            os.umask(old)
    envs = local / "environments"
    assert fetched == [envs / "remote-worker1" / "trials" / "AbC12", envs / "remote-worker3" / "trials" / "Xy_9-z"]
    assert (fetched[0] / "model.pt").read_bytes() == weights
    assert (fetched[0] / "config.json").read_text() == '{"lr": 0.01}'
    assert (fetched[0] / ".nni" / "metrics").read_bytes() == b"ME00000010"
    assert (fetched[1] / "trial.stdout").read_text() == "out\n"
    assert {os.stat(p).st_mode & 0o7777 for p in envs.rglob("*") if p.is_file()} == {0o644}
    assert not (envs / "remote-worker1" / "upload").exists()
    assert {k: v for k, v in snapshot(local).items() if not k.startswith("environments")} == untouched
    assert not [p for p in local.rglob(".fetch-*")]


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo", "worker symlink"])
def test_a_hostile_machine_is_refused_for_real(tmp_path, remote_experiment, plant):
    """Through the real sshd: the machine's own tar archives what an attacker left in its trial folder."""
    from helpers.files import snapshot

    exp_id, remote, local = remote_experiment
    trial = remote_trial(remote)
    (trial / "model.pt").write_bytes(b"weights")
    name = "environments/remote-worker1/trials/AbC12/run.json"
    if plant == "symlink":
        (trial / "run.json").symlink_to(local / "funcapprox" / "run.json")
        problem = f"is a symbolic link \\(to '{local}/funcapprox/run.json'\\)"
    elif plant == "hardlink":
        os.link(trial / "model.pt", trial / "run.json")  # tar sends the second name as a hard link
        problem = "is a hard link \\(to 'environments/remote-worker1/trials/AbC12/model.pt'\\)"
    elif plant == "fifo":
        os.mkfifo(trial / "run.json")
        problem = "is a FIFO"
    else:  # a whole worker folder that is a link: tar archives the link, not what it points to
        (remote / "environments" / "remote-worker2").mkdir()
        (remote / "environments" / "remote-worker2" / "trials").symlink_to(local / "funcapprox")
        name, problem = "environments/remote-worker2/trials", f"is a symbolic link \\(to '{local}/funcapprox'\\)"
    before = snapshot(local)
    with ssh_server(tmp_path / "sshd") as server:
        machine = Machine(server.host, server.user, server.key_file, sys.executable, server.port)
        with pytest.raises(ExperimentError, match=f"^refused the trial files of {exp_id} from {server.user}@"
                                                  f"127.0.0.1:{server.port}: member '{name}' {problem}; nothing was "
                                                  "written$"):
            fetch_trials([machine], tmp_path / "work", exp_id, known_hosts=tmp_path / "known_hosts")
    assert snapshot(local) == before


def test_a_machine_that_fails_does_not_keep_the_others_files(tmp_path, keys, remote_experiment):
    exp_id, remote, local = remote_experiment
    (remote_trial(remote) / "model.pt").write_bytes(b"weights")
    with ssh_server(tmp_path / "sshd") as server:
        locked_out = Machine(server.host, server.user, keys / "id", sys.executable, server.port)  # not authorized
        machine = Machine(server.host, server.user, server.key_file, sys.executable, server.port)
        with pytest.raises(ExperimentError, match=rf"^cannot log in to {server.user}@127.0.0.1:{server.port} with "
                                                  r".*/id: .*Permission denied"):
            fetch_trials([locked_out, machine], tmp_path / "work", exp_id, known_hosts=tmp_path / "known_hosts")
    assert (local / "environments/remote-worker1/trials/AbC12/model.pt").read_bytes() == b"weights"


# --- a real search over SSH ---------------------------------------------------------------------

SPACE = {"learning_rate": {"_type": "choice", "_value": [0.005, 0.01]}}


@pytest.mark.nni
@pytest.mark.parametrize("function", ["square", "data file"])
def test_search_with_platform_remote_runs_its_trials_over_ssh(workdir, tmp_path, function):
    """`funcapprox search --platform remote` through a real sshd on loopback: NNI's remote service
    runs the trials over SSH; results, plot and report then work as for a local search. A data file
    travels in the trial code folder NNI sends, named relative to it."""
    from helpers.files import write_measurements
    from helpers.nni import LOOPBACK, funcapprox, listening_addresses

    from funcapprox.nni.store import load_experiment
    from funcapprox.results import experiment_ids, read_meta

    func, label = "square", "square"
    if function == "data file":
        func, label = str(write_measurements(tmp_path / "measurements.csv")), "measurements.csv"
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    with ssh_server(tmp_path / "sshd") as server:
        known_host = f"[{server.host}]:{server.port}"
        path = write_machines(tmp_path, [{"host": server.host, "port": server.port, "user": server.user,
                                          "sshKeyFile": str(server.key_file), "python": sys.executable}])
        args = ("search", "--stage", "nonarch", "--func", func, "--space", str(tmp_path / "space.json"),
                "--epochs", "5", "--platform", "remote", "--machines", str(path))
        try:
            dry = funcapprox(*args, "--dry-run", workdir=workdir)
            assert dry.returncode == 0, dry.stderr
            config = yaml.safe_load((workdir / ".dry-run" / f"{label}-nonarch" / "config.yml").read_text())
            assert config["trainingService"]["platform"] == "remote"
            assert config["trainingService"]["machineList"][0]["port"] == server.port
            assert config["trialCommand"].startswith(sys.executable) and "--warm" not in config["trialCommand"]
            if function == "data file":
                (copy,) = (workdir / ".trial-code" / "data").iterdir()
                assert f" --set func=data/{copy.name} " in config["trialCommand"]

            done = funcapprox(*args, "--keep-ui", workdir=workdir, timeout=600)
            assert done.returncode == 0, done.stderr
            assert "over SSH" in done.stdout and "best trial" in done.stdout
            (exp_id,) = experiment_ids(workdir)
            # The machine is this one: the manager listens where it connects back, loopback, and nowhere else.
            port = read_meta(workdir / exp_id)["port"]
            assert listening_addresses(port) == LOOPBACK
            assert listening_addresses(port + 1) <= LOOPBACK  # NNI 3.0 keeps port + 1 for remote platforms
            assert funcapprox("experiments", "--stop", exp_id, workdir=workdir).returncode == 0
            shutil.rmtree(Path.home() / "nni-experiments" / exp_id)  # the remote side: no path there is read now
            experiment = load_experiment(workdir, exp_id)
            if function == "data file":
                assert {t.params["func"] for t in experiment.trials} == {str(copy)}
            assert sorted(t.params["lr"] for t in experiment.trials) == [0.005, 0.01]
            assert all(t.status == "SUCCEEDED" and t.output_dir.parts[-3] == "remote-worker1"
                       and (t.output_dir / "model.pt").exists() for t in experiment.trials)  # fetched back
            plot = funcapprox("plot", "--trial", "best", workdir=workdir)
            assert plot.returncode == 0, plot.stderr
            assert (workdir / exp_id / "funcapprox" / "report.html").exists()
        finally:
            subprocess.run(["ssh-keygen", "-R", known_host], capture_output=True)  # a throw-away host key
            for exp_id in experiment_ids(workdir):
                shutil.rmtree(Path.home() / "nni-experiments" / exp_id, ignore_errors=True)  # the "remote" side
    assert not subprocess.run(["pgrep", "-f", "trial_keeper"], capture_output=True).stdout
