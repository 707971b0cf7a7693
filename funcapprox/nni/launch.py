"""Start NNI's manager for a new, resumed or viewed experiment, locked down.

What `nnictl create`, `nnictl resume` and `nnictl view` do (nni/tools/nnictl/launcher.py),
through NNI's Python API, with what nnictl cannot do:
- the web UI and REST API listen on loopback only (plus a remote experiment's
  nniManagerIp), and answer a bare 404 outside the secret URL prefix: NNI's manager
  (Node.js) is started with manager_preload.js (NODE_OPTIONS=--require);
- the prefix reaches the manager through its environment, not its command line, and
  this launcher reads it from standard input, not from its own;
- the experiment's folder and log folder are 0700 and the files that hold the prefix
  (NNI's logs, its manifest ~/nni-experiments/.experiment) 0600, whatever the umask.

    echo '{"action": "create", "config": "config.yml", "port": 8080, "prefix": "…"}' | python -m funcapprox.nni.launch
    echo '{"action": "resume", "id": "…", "workdir": "…", "port": 8080, "prefix": "…"}' | python -m …  # or view

It prints `Experiment ID: <id>` as soon as the id is known.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PRELOAD = Path(__file__).with_name("manager_preload.js")
# Files NNI writes into <experiment>/log/ that name the prefix or may (made 0600 before it opens them).
LOG_FILES = ("nnimanager.log", "nnictl_stdout.log", "nnictl_stderr.log", "experiment.log", "dispatcher.log")


def private_file(path: Path) -> None:
    """Create `path` (or keep it) readable by its owner only; NNI then appends to it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)


def private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def lock_down(workdir: Path, exp_id: str) -> None:
    folder = Path(workdir) / exp_id
    for each in (folder, folder / "log"):
        private_folder(each)
    for name in LOG_FILES:
        private_file(folder / "log" / name)
    from nni.tools.nnictl.config_utils import Experiments

    manifest = Path(Experiments().experiment_file)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    private_file(manifest)


def manager_environment(prefix: str, listen: list[str]) -> None:
    """What the manager inherits from this process: the preload, the prefix, the addresses."""
    os.environ["NODE_OPTIONS"] = f'--require "{PRELOAD}"'
    os.environ["FUNCAPPROX_URL_PREFIX"] = prefix
    os.environ["FUNCAPPROX_LISTEN"] = ",".join(listen)


def listen_addresses(config) -> list[str]:
    """Where the manager listens besides loopback: the address remote machines connect back to."""
    config = config.canonical_copy()
    services = config.training_service if isinstance(config.training_service, list) else [config.training_service]
    found = [config.nni_manager_ip, *(getattr(s, "nni_manager_ip", None) for s in services)]
    return sorted({a for a in found if isinstance(a, str) and a and a not in ("localhost", "127.0.0.1", "::1")})


def _prefix_off_the_command_line() -> None:
    """NNI passes --url-prefix to the manager's main.js; the preload adds it back from the environment."""
    from nni.experiment import launcher

    to_args = launcher.NniManagerArgs.to_command_line_args

    def without_prefix(self) -> list[str]:
        args = to_args(self)
        if "--url-prefix" in args:
            at = args.index("--url-prefix")
            del args[at:at + 2]
        return args

    launcher.NniManagerArgs.to_command_line_args = without_prefix


def main(request: dict) -> int:
    from nni.experiment import Experiment, RunMode
    from nni.experiment.config import ExperimentConfig
    from nni.experiment.launcher import get_stopped_experiment_config_json

    action = request["action"]
    if action == "create":
        config = ExperimentConfig.load(request["config"])
        experiment = Experiment(config)
    else:
        stored = get_stopped_experiment_config_json(request["id"], request["workdir"])
        if stored is None:
            print(f"no experiment {request['id']} in {request['workdir']}", file=sys.stderr)
            return 1
        experiment = Experiment(ExperimentConfig(**stored), id=request["id"])
        experiment._action = action  # what Experiment.resume() and .view() set; they take no prefix
    print(f"Experiment ID: {experiment.id}", flush=True)
    lock_down(Path(experiment.config.canonical_copy().experiment_working_directory), experiment.id)
    experiment.url_prefix = request["prefix"]
    manager_environment(request["prefix"], listen_addresses(experiment.config))
    _prefix_off_the_command_line()
    experiment.start(int(request["port"]), False, RunMode.Detach)  # Detach: the manager outlives this process
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.stdin.read())))
