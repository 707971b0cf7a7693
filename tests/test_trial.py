"""The NNI trial entry point, against a small real HTTP server that speaks NNI 3.0's trial channel."""

from __future__ import annotations

import json
import math
import shlex
import time

import pytest
from helpers.nni import ChannelServer

from funcapprox.config import TrainConfig, read_set_pairs
from funcapprox.errors import ConfigError
from funcapprox.nni import channel, trial
from funcapprox.nni.channel import HttpTrialChannel
from funcapprox.nni.config import trial_command
from funcapprox.nni.trial import final_result, resolve

FINAL_KEYS = {"default", "rms", "max_error", "max_error_x", "n_params", "seconds"}
# A stage's fixed settings for a run of a few hundredths of a second; the tuner picks act and lr.
TINY_FIXED = {"func": "square", "hidden": [8], "optimizer": "Adam", "loss": "MSELoss", "epochs": 5, "refine": "none"}
TINY_PARAMS = {"act_func": "Tanh", "learning_rate": 0.01}
DIVERGING_FIXED = {"func": "square", "hidden": [16, 16, 16], "act": "Sigmoid", "optimizer": "SGD", "epochs": 50}


@pytest.fixture
def serve():
    """Start ChannelServer(...) instances for a test and stop every one of them afterwards."""
    servers: list[ChannelServer] = []

    def start(*args, **kwargs) -> ChannelServer:
        server = ChannelServer(*args, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _trial_environment(monkeypatch):
    monkeypatch.setenv("NNI_TRIAL_JOB_ID", "Tr1aL")
    monkeypatch.delenv(channel.CHANNEL_VARIABLE, raising=False)
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)


# --- read_set_pairs and resolve ------------------------------------------------------------------


def test_parse_fixed_reads_json_values_and_keeps_text():
    pairs = ["func=square", "lr=0.01", "hidden=16,16,16", "output_act=false", "epochs=7", "act=Tanh", "seed=12"]
    assert read_set_pairs(pairs) == {"func": "square", "lr": 0.01, "hidden": "16,16,16", "output_act": False,
                                  "epochs": 7, "act": "Tanh", "seed": 12}


def test_parse_fixed_splits_at_the_first_equals_sign():
    assert read_set_pairs(["act=a=b", " loss =MSELoss"]) == {"act": "a=b", "loss": "MSELoss"}


def test_parse_fixed_of_nothing_is_empty():
    assert read_set_pairs([]) == {}


def test_parse_fixed_needs_key_value():
    with pytest.raises(ConfigError, match="--set takes NAME=VALUE, like act_func=Tanh; got 'epochs'"):
        read_set_pairs(["epochs"])


def test_resolve_puts_the_parameters_over_the_fixed_settings():
    fixed = {"func": "square", "act": "Sigmoid", "lr": 0.01, "hidden": "16,16,16"}
    config = resolve(fixed, {"act_func": "Tanh", "arch": {"_name": "1 hidden layer", "hidden_size_1": 64}})
    assert config == TrainConfig(func="square", act="Tanh", lr=0.01, hidden=(64,))


@pytest.mark.parametrize("params", [None, {}])
def test_resolve_without_parameters_is_the_fixed_settings(params):
    assert resolve({"func": "square", "epochs": 5}, params) == TrainConfig(func="square", epochs=5)


@pytest.mark.parametrize(
    "fixed, params, words",
    [
        ({"func": "square"}, {"dropout": 0.5}, "unknown parameter 'dropout' in the parameters NNI sent"),
        ({"func": "square"}, {"learning_rate": -1}, "lr must be a number greater than 0"),
        ({"func": "square"}, {"act_func": "Gelu"}, "act must be one of"),
        ({"func": "square"}, {"hidden_size_1": 0}, "the first layer needs at least 1 unit"),
        ({"func": "square"}, ["Tanh"], "must be a JSON object"),
        ({"func": "square", "colour": "red"}, {}, "unknown setting 'colour' in the trial's settings"),
        ({"func": "cubic"}, {}, "func must be one of"),
    ],
)
def test_resolve_rejects(fixed, params, words):
    with pytest.raises(ConfigError, match=words):
        resolve(fixed, params)


def test_final_result_has_the_study_metric_as_default(tiny_config):
    from funcapprox.train import train

    result = train(tiny_config)
    final = final_result(result)
    assert set(final) == FINAL_KEYS
    summary = result.summary()
    assert final["default"] == summary["metric"] == result.metric
    assert (final["rms"], final["max_error"], final["max_error_x"], final["n_params"], final["seconds"]) == (
        summary["rms"], summary["max_error"], summary["max_error_x"], 25, summary["seconds"])
    json.dumps(final, allow_nan=False)  # NNI gets plain JSON


# --- the HTTP channel -------------------------------------------------------------------------


def test_parameters_polls_through_408_until_the_reply(serve):
    server = serve({"act_func": "Tanh"}, parameter_id=42, polls_before_reply=3)
    channel = HttpTrialChannel(server.url)
    assert channel.parameters() == {"act_func": "Tanh"}
    assert channel.parameter_id == 42
    assert server.received == [{"type": "request_parameter"}]
    assert server.put_content_types == ["application/json"]
    assert server.get_statuses == [408, 408, 408, 200]


def test_parameters_on_a_closed_channel_raise(serve):
    server = serve({"act_func": "Tanh"})
    server.close()
    with pytest.raises(ConnectionError, match="NNI sent no parameters"):
        HttpTrialChannel(server.url).parameters()
    assert server.get_statuses == [410]


def test_metrics_are_sent_as_nni_3_sends_them(serve):
    server = serve({"act_func": "Tanh"}, parameter_id=5, polls_before_reply=0)
    channel = HttpTrialChannel(server.url)
    channel.parameters()
    for value in (0.5, 1.25, 2.0):
        channel.intermediate(value)
    channel.final({"default": 2.0, "n_params": 25})
    commands = server.received[1:]
    assert [set(c) for c in commands] == [{"type", "metric"}] * 4
    assert all(c["type"] == "metric" and isinstance(c["metric"], str) for c in commands)  # metric is JSON text
    metrics = server.metrics()
    assert metrics[:3] == [
        {"parameter_id": 5, "trial_job_id": "Tr1aL", "type": "PERIODICAL", "sequence": i, "value": json.dumps(v)}
        for i, v in enumerate((0.5, 1.25, 2.0))
    ]
    assert metrics[3] == {"parameter_id": 5, "trial_job_id": "Tr1aL", "type": "FINAL", "sequence": 0,
                          "value": json.dumps({"default": 2.0, "n_params": 25})}
    assert json.loads(metrics[3]["value"]) == {"default": 2.0, "n_params": 25}  # value is JSON text of the value


def test_request_parameter_command_is_exactly_nni_s(serve):
    server = serve({}, polls_before_reply=0)
    HttpTrialChannel(server.url).parameters()
    assert server.received == [{"type": "request_parameter"}]


def test_connect_picks_the_http_channel_from_the_environment(monkeypatch, serve):
    server = serve({})
    monkeypatch.setenv(channel.CHANNEL_VARIABLE, server.url)
    connected = channel.connect()
    assert isinstance(connected, HttpTrialChannel) and connected.url == server.url


# --- run: a whole trial -----------------------------------------------------------------------


def test_run_trains_reports_and_writes_its_files(tmp_path, serve):
    server = serve(TINY_PARAMS, parameter_id=3)
    out = tmp_path / "trial"
    out.mkdir()
    started = time.time()
    assert trial.run(dict(TINY_FIXED), HttpTrialChannel(server.url), out) == 0
    ended = time.time()
    assert server.get_statuses[-3:] == [408, 408, 200]

    config = json.loads((out / "config.json").read_text())
    assert config == TrainConfig(func="square", hidden=(8,), act="Tanh", lr=0.01, optimizer="Adam",
                                 epochs=5, refine="none").to_dict()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert (out / "model.pt").stat().st_size > 0
    assert not (out / "failure.json").exists()
    # What the trial really received: NNI 3.0's own store can pair it with another trial's parameters.
    received = json.loads((out / "parameters.json").read_text())
    assert started <= received.pop("received_at") <= ended  # when it received them, seconds since the epoch
    assert received == {"parameter_id": 3, "parameters": TINY_PARAMS}

    sent = server.metrics()
    periodical = [m for m in sent if m["type"] == "PERIODICAL"]
    (final,) = [m for m in sent if m["type"] == "FINAL"]
    assert sent[-1] == final  # the final result comes last
    assert [m["sequence"] for m in periodical] == [0]  # 5 epochs: one evaluation
    assert all(m["parameter_id"] == 3 and m["trial_job_id"] == "Tr1aL" for m in sent)
    value = json.loads(final["value"])
    assert set(value) == FINAL_KEYS
    assert value["default"] == pytest.approx(metrics["metric"])
    assert value["n_params"] == 25
    assert json.loads(periodical[0]["value"]) == pytest.approx(metrics["metric"])


def test_run_sends_an_intermediate_every_report_every_epochs_and_the_last(tmp_path, serve):
    server = serve(TINY_PARAMS, polls_before_reply=0)
    out = tmp_path / "trial"
    out.mkdir()
    epochs = 2 * trial.REPORT_EVERY + 15
    assert trial.run({**TINY_FIXED, "epochs": epochs}, HttpTrialChannel(server.url), out) == 0
    periodical = [m for m in server.metrics() if m["type"] == "PERIODICAL"]
    assert [m["sequence"] for m in periodical] == [0, 1, 2]
    history = json.loads((out / "history.json").read_text())  # every evaluation, every 5 epochs
    assert [e["epoch"] for e in history] == list(range(5, epochs + 1, 5))
    sent = [e for e in history if e["epoch"] in (trial.REPORT_EVERY, 2 * trial.REPORT_EVERY, epochs)]
    assert [json.loads(m["value"]) for m in periodical] == pytest.approx([e["metric"] for e in sent])
    at = trial.reported_epochs([e["epoch"] for e in history], epochs, len(periodical))
    assert at == [trial.REPORT_EVERY, 2 * trial.REPORT_EVERY, epochs]
    assert trial.reported_epochs([5, 10, 12], 12, 3) == [5, 10, 12]  # recorded before REPORT_EVERY: all


def test_run_of_a_diverging_config_returns_1_and_sends_no_final(tmp_path, serve, capsys):
    server = serve({"learning_rate": 1e6}, polls_before_reply=1)
    out = tmp_path / "trial"
    out.mkdir()
    assert trial.run(dict(DIVERGING_FIXED), HttpTrialChannel(server.url), out) == 1
    failure = json.loads((out / "failure.json").read_text())
    assert failure["reason"].startswith("training diverged at epoch 5")
    assert failure["metric"] is None
    assert [m for m in server.metrics() if m["type"] == "FINAL"] == []
    assert all(math.isfinite(json.loads(m["value"])) for m in server.metrics())  # no NaN ever reaches NNI
    assert not (out / "model.pt").exists()
    assert json.loads((out / "metrics.json").read_text())["status"] == "diverged"
    assert "training diverged" in capsys.readouterr().err


def test_run_with_an_unknown_parameter_returns_2_and_trains_nothing(tmp_path, serve, capsys):
    server = serve({**TINY_PARAMS, "dropout": 0.5}, polls_before_reply=0)
    out = tmp_path / "trial"
    out.mkdir()
    assert trial.run(dict(TINY_FIXED), HttpTrialChannel(server.url), out) == 2
    failure = json.loads((out / "failure.json").read_text())
    assert "unknown parameter 'dropout'" in failure["reason"]
    assert failure["parameters"] == {**TINY_PARAMS, "dropout": 0.5}
    assert server.metrics() == []
    assert not (out / "config.json").exists() and not (out / "model.pt").exists()
    assert json.loads((out / "parameters.json").read_text())["parameters"] == {**TINY_PARAMS, "dropout": 0.5}
    assert "rejected parameters" in capsys.readouterr().err


def test_main_runs_the_command_nni_is_given(tmp_path, monkeypatch, serve):
    """The generated trialCommand's arguments, the channel URL and output folder from NNI's environment."""
    server = serve(TINY_PARAMS, polls_before_reply=0)
    out = tmp_path / "nni-output"
    out.mkdir()
    monkeypatch.setenv(channel.CHANNEL_VARIABLE, server.url)
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(out))
    argv = shlex.split(trial_command(TrainConfig(func="square", hidden=(8, 4), epochs=5).to_dict()))[3:]
    assert trial.main(argv) == 0
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config == TrainConfig(func="square", hidden=(8, 4), epochs=5, act="Tanh", lr=0.01)
    assert [m["type"] for m in server.metrics()] == ["PERIODICAL", "FINAL"]


def test_main_rejects_a_malformed_set_without_contacting_nni(tmp_path, monkeypatch, serve, capsys):
    server = serve(TINY_PARAMS)
    monkeypatch.setenv(channel.CHANNEL_VARIABLE, server.url)
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path))
    assert trial.main(["--set", "epochs"]) == 2
    assert server.received == []
    assert "--set takes NAME=VALUE" in capsys.readouterr().err
