"""In the warm worker: gather the trials that can share a batched step and train each gathering as one.

When the search asks for it (a grid stage, see search/plan.py), the worker (warm.py) does not fork a
child per trial. A thread takes each trial in: its request, its parameters from NNI, its configuration.
The trials wait here by group key (config.group_key) until their group is whole (as many as the grid
holds of it, at most GROUP_LIMIT), or until a trainer would idle and nothing new has come for
GATHER_WAIT seconds; then a child forked from the worker trains the group as one batched step
(group.py) and speaks for each member as its own process would: its intermediate results, its files,
its final result and its exit code, each on that trial's own NNI channel and connection. A member whose
trial process goes away stops alone.

The numbers do not depend on the gathering: each copy of a batched step computes what it would beside
any others or none (group.py), so a group taken short, a trial alone in its grid group and one that
trains in its own process (`--batched`, when no worker takes it) all give the same. A configuration
that group.py does not take (a data file's, one that refines) trains alone with train.train.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig, group_key, read_set_pairs
from ..errors import ConfigError
from .channel import CHANNEL_VARIABLE, HttpTrialChannel

GROUP_LIMIT = 12  # configurations per batched step: the study's stage-1 groups; more gains little (group.py)
GATHER_WAIT = 1.0  # seconds with no trial coming in before a trainer with nothing to do takes a group short of whole
ALONE = "alone:"  # the key prefix of trials that train by themselves (Member.key)


@dataclass
class Member:
    """A trial taken in: where it talks to NNI and to its trial process, and what it trains."""

    connection: object  # the trial process's socket (warm.py)
    channel: HttpTrialChannel
    config: TrainConfig
    output_dir: Path
    cwd: str
    key: str = field(init=False)
    arrived: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        from ..group import can_group

        # one that group.py does not take never waits with those it does
        self.key = group_key(self.config) if can_group(self.config) else ALONE + group_key(self.config)


def set_pairs(argv: list[str]) -> dict:
    """The settings of a checked argv (warm._check_argv: `--set K=V` or `--set=K=V` only)."""
    pairs = [a.removeprefix("--set=") for a in argv if a not in ("--set", "--batched")]
    return read_set_pairs(pairs)


def take_in(connection, argv: list[str], env: dict[str, str], cwd: str) -> Member | None:
    """A checked request's trial, its parameters asked of NNI; None when it was answered here already
    (parameters that make no configuration: the trial fails with 2, as in its own process)."""
    from . import trial
    from .warm import send

    output_dir = Path(env["NNI_OUTPUT_DIR"])
    channel = HttpTrialChannel(env[CHANNEL_VARIABLE], env.get("NNI_TRIAL_JOB_ID", ""))
    try:
        config = trial.receive(set_pairs(argv), channel, output_dir)
    except (ConfigError, trial.Rejected) as exc:
        message = str(exc) if isinstance(exc, trial.Rejected) else f"funcapprox trial: {exc}"
        send(connection, {"err": message + "\n"})
        send(connection, {"exit": 2})
        connection.close()
        return None
    return Member(connection, channel, config, output_dir, cwd)


class Gathering:
    """The trials taken in and not yet training, by group key; thread-safe (threads take trials in)."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = dict(sizes or {})  # group key -> configurations of the grid in that group
        self.waiting: dict[str, list[Member]] = {}
        self.handed: dict[str, int] = {}  # members of each key handed out to train
        self.taking_in: set = set()  # the connections of trials being taken in right now (their key is not known yet)
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        with self.lock:
            return len(self.taking_in) + sum(map(len, self.waiting.values()))

    def starting(self, connection) -> None:
        with self.lock:
            self.taking_in.add(connection)
            self.last = time.monotonic()

    def add(self, connection, member: Member | None) -> None:
        """The trial on `connection` taken in (None: it was answered while being taken in)."""
        with self.lock:
            self.taking_in.discard(connection)
            self.last = time.monotonic()
            if member is not None:
                self.waiting.setdefault(member.key, []).append(member)

    def ready(self, idle: bool = True) -> list[list[Member]]:
        """The groups to train now: every whole one; and when a trainer is `idle` and nothing has come in
        for GATHER_WAIT seconds, what waits (resume leaves groups short, so does a search's end, and so
        can NNI while every trial slot holds a trial waiting here)."""
        out = []
        with self.lock:
            quiet = idle and not self.taking_in and time.monotonic() - self.last >= GATHER_WAIT
            for key, members in self.waiting.items():
                while members:
                    whole = 1 if key.startswith(ALONE) else \
                        min(GROUP_LIMIT, max(1, self.sizes.get(key, GROUP_LIMIT) - self.handed.get(key, 0)))
                    if len(members) < whole and not quiet:
                        break
                    group, members[:] = members[:whole], members[whole:]
                    self.handed[key] = self.handed.get(key, 0) + len(group)
                    out.append(group)
            self.waiting = {k: v for k, v in self.waiting.items() if v}
        return out

    def connections(self) -> list:
        """The trial processes' connections it holds: taken in, or being taken in."""
        with self.lock:
            return [*self.taking_in, *(m.connection for members in self.waiting.values() for m in members)]


def train_members(members: list[Member]) -> None:
    """In a child of the worker: train the group and answer for every member (see the module's doc)."""
    from ..group import Stop, train_group
    from ..train import train
    from . import trial
    from .warm import client_gone, send

    os.chdir(members[0].cwd)
    done: set[int] = set()

    def on_eval(i: int, evaluation) -> None:
        member = members[i]
        if client_gone(member.connection):  # NNI cancelled or killed that trial
            raise Stop
        if trial.reports(evaluation, member.config.epochs):
            try:
                member.channel.intermediate(evaluation.metric)
            except (OSError, http.client.HTTPException):  # NNI closed that trial's channel: it stops alone
                raise Stop from None

    try:
        if members[0].key.startswith(ALONE):
            try:
                results = [train(members[0].config, on_eval=lambda evaluation: on_eval(0, evaluation))]
            except Stop:
                results = [None]
            where = "in a warm worker"
        else:
            results = train_group([m.config for m in members], on_eval)
            where = f"in a warm worker, one batched step for {len(members)} trial{'s' * (len(members) > 1)}"
        for i, (member, result) in enumerate(zip(members, results)):
            done.add(i)
            if result is None:  # its trial process is gone: nobody to answer
                continue
            try:
                code, line = trial.finish(result, member.channel, member.output_dir,
                                          time.perf_counter() - member.arrived, where)
                send(member.connection, {"out" if code == 0 else "err": line + "\n"})
                send(member.connection, {"exit": code})
            except (OSError, http.client.HTTPException):  # its trial process or NNI went away meanwhile;
                pass  # the others still get theirs
    except BaseException:
        text = traceback.format_exc()
        for i, member in enumerate(members):
            if i not in done:
                try:
                    send(member.connection, {"err": text})
                    send(member.connection, {"exit": 1})
                except OSError:
                    pass


def load_sizes(path: str | None) -> dict[str, int] | None:
    """The grid's group sizes as the search wrote them (warm.worker): {group key: configurations}."""
    if path is None:
        return None
    sizes = json.loads(Path(path).read_text())
    return {str(k): int(v) for k, v in sizes.items()}
