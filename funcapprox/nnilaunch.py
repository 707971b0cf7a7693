"""`nnictl resume` and `nnictl view`, with the web UI behind a secret URL prefix.

nnictl offers --url_prefix only to `create`. This does what its resume and view do
(nni/tools/nnictl/launcher.py) through NNI's Python API, with the prefix set, so a
resumed or viewed experiment is no more open than a new one.

    python -m funcapprox.nnilaunch resume|view EXP_ID PORT WORKDIR PREFIX
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    action, exp_id, port, workdir, prefix = argv
    from nni.experiment import Experiment, RunMode
    from nni.experiment.config import ExperimentConfig
    from nni.experiment.launcher import get_stopped_experiment_config_json

    stored = get_stopped_experiment_config_json(exp_id, workdir)
    if stored is None:
        print(f"no experiment {exp_id} in {workdir}", file=sys.stderr)
        return 1
    experiment = Experiment(ExperimentConfig(**stored), id=exp_id)
    experiment.url_prefix = prefix
    experiment._action = action  # what Experiment.resume() and .view() set; they take no prefix
    experiment.start(int(port), False, RunMode.Detach)  # Detach: the manager outlives this process
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
