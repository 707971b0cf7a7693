"""The HTML report: its data from the recorded NNI 3.0 experiment and from a small fabricated arch stage,
that it is self-contained and escaped, and (marked `browser`) that headless Chromium renders it without errors."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers.browser import DevTools, browser, open_file, screenshot  # noqa: F401 (browser: a fixture)
from helpers.recorded import PNG_SIGNATURE, RECORDED, RECORDED_ID, copy_recorded, trial_folder

from funcapprox.artifacts import save_run, write_json
from funcapprox.config import TrainConfig, params_to_settings
from funcapprox.errors import ConfigError, ExperimentError
from funcapprox.nni.store import load_experiment
from funcapprox.train import train
from funcapprox.views.pareto import pareto_front
from funcapprox.views.report import (
    REPORT_FILE,
    SECTIONS,
    parallel_data,
    param_summaries,
    render_report,
    searched_settings,
    write_report,
)

SECTION_IDS = [key for key, _ in SECTIONS]
ARCH_ID = "archsyn1"
# The fabricated arch stage: quick square fits with stage 1's settings fixed, one trial killed.
# The study's trainer: with it these 30-epoch nets spread out in size and error as the tests expect.
ARCH_FIXED = {"func": "square", "act": "Tanh", "optimizer": "Adam", "lr": 0.01, "loss": "MSELoss", "epochs": 30,
              "init": "default", "lr_schedule": "constant"}
ARCH_TRIALS = {
    "a4": (4,), "a8": (8,), "a16": (16,), "a32": (32,), "a8x8": (8, 8), "a16x8": (16, 8),
    "a16x16x16": (16, 16, 16), "a4x4x4": (4, 4, 4),
}
ARCH_KILLED = "a4x4x4"
KILLED_REASON = "killed by the max trial duration"


# --- reading the page -------------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of a report the tests look at: sections and their text, tables, images, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.section_ids: list[str] = []
        self.text: dict[str, str] = {}
        self.tables: list[tuple[str, str, list[list[str]]]] = []  # (section, class, body rows)
        self.images: list[str] = []
        self.urls: list[str] = []  # every src and href
        self.tags: list[str] = []
        self._section = ""
        self._rows: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._head = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "section":
            self._section = a.get("id") or ""
            self.section_ids.append(self._section)
            self.text[self._section] = ""
        elif tag == "table":
            self._rows = []
            self.tables.append((self._section, a.get("class") or "", self._rows))
        elif tag == "thead":
            self._head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._rows is not None:
            if not self._head:
                self._rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._section:
            self.text[self._section] += data
        if self._cell is not None:
            self._cell.append(data)

    def table(self, section: str, cls: str = "") -> list[list[str]]:
        found = [rows for s, c, rows in self.tables if s == section and (not cls or cls in c.split())]
        assert found, f"no table {cls!r} in section {section!r}"
        return found[0]

    def kv(self, section: str) -> dict[str, str]:
        return {row[0]: row[1] for row in self.table(section, "kv")}


# --- a fabricated arch-stage experiment -------------------------------------------------------


def fabricate_experiment(workdir: Path, exp_id: str, stage: str, fixed: dict[str, Any],
                         trials: dict[str, dict[str, Any]], killed: tuple[str, ...] = (),
                         from_experiment: str | None = None, handoff: dict[str, Any] | None = None) -> Path:
    """An experiment folder as NNI 3.0 and funcapprox leave it, without NNI: NNI's own sqlite store
    (the recorded one's schema and profile, its trial rows replaced), run.json, and one trial folder per
    trial with what funcapprox.nni.trial writes. Trials train for real (quickly); `killed` ones never ran."""
    folder = workdir / exp_id
    (folder / "db").mkdir(parents=True)
    (folder / "funcapprox").mkdir()
    shutil.copy(RECORDED / RECORDED_ID / "db" / "nni.sqlite", folder / "db" / "nni.sqlite")  # read, never written
    write_json(folder / "funcapprox" / "run.json", {
        "id": exp_id, "stage": stage, "fixed": fixed, "handoff": handoff or {}, "from_experiment": from_experiment,
        "space_source": f"search_spaces/{stage}.json", "tuner": "GridSearch", "concurrency": 2,
        "max_trials": len(trials), "max_duration": None, "grid_size": len(trials), "created": time.time(),
        "status": "DONE", "finished": True,
    })
    events, metrics = [], []
    t0 = 1_800_000_000_000  # ms, after the recorded experiment
    for sequence, (trial_id, nni_params) in enumerate(trials.items()):
        out = folder / "environments" / "local-env" / "trials" / trial_id
        out.mkdir(parents=True)
        write_json(out / "parameters.json", {"parameter_id": sequence, "parameters": nni_params})
        logged = f"/elsewhere/{exp_id}/environments/local-env/trials/{trial_id}"  # NNI records absolute paths
        record = json.dumps({"parameter_id": sequence, "parameter_source": "algorithm", "parameters": nni_params,
                             "parameter_index": 0})
        start = t0 + 1000 * sequence
        events.append((start, trial_id, "RUNNING", record, logged, sequence))
        if trial_id in killed:
            write_json(out / "failure.json", {"reason": KILLED_REASON, "metric": None})
            events.append((start + 900, trial_id, "FAILED", None, logged, sequence))
            continue
        result = train(TrainConfig.from_dict({**fixed, **params_to_settings(nni_params)}))
        save_run(out, result)
        for i, e in enumerate(result.history):
            metrics.append((start + 10 + i, trial_id, str(sequence), "PERIODICAL", i, json.dumps(json.dumps(e.metric))))
        final = {"default": result.metric, **{k: result.summary()[k] for k in ("rms", "max_error", "n_params")}}
        metrics.append((start + 500, trial_id, str(sequence), "FINAL", 0, json.dumps(json.dumps(final))))
        events.append((start + 800, trial_id, "SUCCEEDED", None, logged, sequence))
    with sqlite3.connect(folder / "db" / "nni.sqlite") as db:
        db.execute("DELETE FROM TrialJobEvent")
        db.execute("DELETE FROM MetricData")
        db.executemany("INSERT INTO TrialJobEvent (timestamp, trialJobId, event, data, logPath, sequenceId) "
                       "VALUES (?, ?, ?, ?, ?, ?)", events)
        db.executemany("INSERT INTO MetricData (timestamp, trialJobId, parameterId, type, sequence, data) "
                       "VALUES (?, ?, ?, ?, ?, ?)", metrics)
        db.execute("UPDATE ExperimentProfile SET startTime = ?, endTime = ?", (t0 - 5000, t0 + 1000 * len(trials)))
    return folder


def _arch_params(sizes: tuple[int, ...]) -> dict[str, Any]:
    branch = {"_name": f"{len(sizes)} hidden layer{'s' if len(sizes) > 1 else ''}"}
    branch |= {f"hidden_size_{i + 1}": s for i, s in enumerate(sizes)}
    return {"arch": branch}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path, str]:
    """The recorded nonarch experiment (a copy) and its report: (workdir, report, text)."""
    workdir = copy_recorded(tmp_path_factory.mktemp("recorded"))
    path = write_report(workdir)
    return workdir, path, path.read_text()


@pytest.fixture(scope="module")
def arch(tmp_path_factory) -> tuple[Path, Path, str]:
    """A work folder with the recorded nonarch stage and, later, a fabricated arch stage; the arch report."""
    workdir = copy_recorded(tmp_path_factory.mktemp("arch"))
    handoff = {k: v for k, v in ARCH_FIXED.items() if k != "func"}
    fixed = {k: v for k, v in TrainConfig.from_dict(ARCH_FIXED).to_dict().items() if k != "hidden"}
    fabricate_experiment(workdir, ARCH_ID, "arch", fixed, {k: _arch_params(v) for k, v in ARCH_TRIALS.items()},
                         killed=(ARCH_KILLED,), from_experiment=RECORDED_ID, handoff=handoff)
    path = write_report(workdir)  # latest: the arch stage
    return workdir, path, path.read_text()


# --- the recorded nonarch experiment ----------------------------------------------------------


def test_written_beside_the_experiment_by_default(recorded):
    workdir, path, _ = recorded
    assert path == workdir / RECORDED_ID / "funcapprox" / REPORT_FILE
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary file left


def test_sections_in_order(recorded):
    page = Page(recorded[2])
    assert page.section_ids == SECTION_IDS


def test_summary(recorded):
    page = Page(recorded[2])
    summary = page.kv("summary")
    assert summary["experiment"] == RECORDED_ID
    assert summary["stage"].startswith("nonarch")
    assert summary["function"] == "square"
    assert summary["tuner"].startswith("GridSearch, concurrency 2, max trials 4")
    assert summary["status"] == "DONE"
    assert summary["trials"] == "4: 2 failed, 2 succeeded"
    assert summary["searched"] == "act_func, learning_rate"
    assert "hidden={16,16,16}" in summary["fixed"] and "optimizer=SGD" in summary["fixed"]
    assert summary["duration"] == "25s"
    assert "fixed from" not in summary  # a stage 1: nothing handed over
    best = {row[0]: row[1] for row in [rows for s, c, rows in page.tables if s == "summary" and "kv" in c][1]}
    assert best["trial"] == "ud7Qq"
    assert best["network"] == "{16,16,16}, 593 parameters"
    assert best["searched values"] == "act_func=Sigmoid learning_rate=0.01"
    assert best["metric"] == "0.5200" and best["max error"] == "0.67924"
    assert "Best trial ud7Qq" in page.text["summary"]


def test_best_fit_and_the_smallest_network_within_twice_its_error(recorded):
    page = Page(recorded[2])
    text = " ".join(page.text["best"].split())
    assert "The best trial, ud7Qq" in text
    # The front is the one network size; its lowest max error is wcNBM's, within 2x the best's.
    assert "is trial wcNBM, {16,16,16}: the same 593 parameters as the best trial" in text
    assert "max error 0.6648 against 0.6792" in text
    assert text.count("Truth in blue") == 2  # two fit figures


def test_front_table(recorded):
    page = Page(recorded[2])
    assert page.table("pareto", "front") == [["{16,16,16}", "593", "0.66479", "0.5134", "wcNBM",
                                              "smallest within 2×"]]
    assert "the front is one point" in page.text["pareto"]


def test_failures_with_their_reasons(recorded):
    rows = Page(recorded[2]).table("failures", "failures")
    assert [row[0] for row in rows] == ["njzKx", "E3Yy2"]
    assert all(row[1] == "FAILED" and row[3].startswith("training diverged at epoch 5") for row in rows)
    assert [row[2] for row in rows] == ["act_func=Tanh learning_rate=1e+06", "act_func=Sigmoid learning_rate=1e+06"]


def test_all_trials_ranked(recorded):
    rows = Page(recorded[2]).table("trials")
    assert [row[1] for row in rows] == ["ud7Qq", "wcNBM", "njzKx", "E3Yy2"]
    assert rows[0][3:6] == ["Sigmoid", "0.01", "0.5200"]


def test_self_contained(recorded):
    text = recorded[2]
    page = Page(text)
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert all(url.startswith(("data:image/png;base64,", "#")) for url in page.urls), page.urls
    assert "link" not in page.tags and "iframe" not in page.tags and "url(" not in text
    assert len(page.images) == 5  # two fits, the front, the parameters, the history
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert page.tags.count("script") == 2  # the parallel view's data and its code, both inline


def test_the_package_css_and_script_are_inlined(recorded):
    """report.css and report.js are package data (pyproject.toml): the page carries each file whole."""
    from importlib.resources import files

    package = files("funcapprox.views.report")
    css, script = (package.joinpath(name).read_text(encoding="utf-8") for name in ("report.css", "report.js"))
    assert "#pc-svg" in css and 'getElementById("pc-data")' in script  # the real files
    assert f"<style>\n{css}</style>" in recorded[2]
    assert f"<script>\n{script}</script>" in recorded[2]

def test_searched_parameters_and_their_summaries(recorded):
    experiment = load_experiment(recorded[0])
    assert searched_settings(experiment) == ["act", "lr"]  # `seeds` came later: not in run.json's fixed, not searched
    summaries = {s.name: s for s in param_summaries(experiment)}
    assert [(r.label, r.count, r.failed) for r in summaries["act_func"].rows] == [("Sigmoid", 1, 1), ("Tanh", 1, 1)]
    assert [(r.label, r.count, r.failed, r.median) for r in summaries["learning_rate"].rows] == [
        ("0.01", 2, 0, pytest.approx((0.5199665 + 0.5133919) / 2)), ("1e+06", 0, 2, None)]
    sigmoid = summaries["act_func"].rows[0]
    assert sigmoid.best == sigmoid.worst == sigmoid.median == pytest.approx(0.5199665489)


def test_parallel_data(recorded):
    data = parallel_data(load_experiment(recorded[0]))
    assert [a["name"] for a in data["axes"]] == ["act_func", "learning_rate", "metric"]
    assert [line["id"] for line in data["lines"]] == ["wcNBM", "ud7Qq"]  # worst first: the best is drawn on top
    assert [line["best"] for line in data["lines"]] == [False, True]
    assert [line["text"][:2] for line in data["lines"]] == [["Tanh", "0.01"], ["Sigmoid", "0.01"]]
    act = data["axes"][0]
    assert [(t["label"], t["at"]) for t in act["ticks"]] == [("Sigmoid", 0.25), ("Tanh", 0.75)]
    assert all(0 <= p <= 1 for line in data["lines"] for p in line["pos"])
    assert data["lines"][1]["pos"][-1] == 1.0 and data["lines"][0]["pos"][-1] == 0.0  # metric axis: best on top
    embedded = recorded[2].split('id="pc-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == json.loads(json.dumps(data))


def test_pareto_and_metric_by_value_figures_data_first():
    import numpy as np
    from matplotlib.figure import Figure

    from funcapprox.results import TrialRecord
    from funcapprox.views.plot import MetricByValue, draw_metric_by_value, draw_pareto, pareto_data

    def trial(trial_id, hidden, max_error, status="SUCCEEDED"):
        params = TrainConfig(func="square", hidden=hidden).to_dict()
        return TrialRecord(trial_id, status, params, {}, metric=1.0, max_error=max_error,
                           n_params=TrainConfig(hidden=hidden).n_params)

    trials = [trial("a", (4,), 0.1), trial("b", (8,), 0.2), trial("c", (64,), 0.01), trial("d", (2,), 0.0, "FAILED")]
    data = pareto_data(trials, {"best": trials[2]})
    assert data.n_params.tolist() == [13, 25, 193] and data.max_error.tolist() == [0.1, 0.2, 0.01]
    assert data.front_params.tolist() == [13, 193] and data.front_labels == ["{4,0,0}", "{64,0,0}"]
    assert data.marks == [("best", 193, 0.01)]
    assert isinstance(draw_pareto(data), Figure)
    panels = [MetricByValue("act_func", ["ReLU", "Tanh"], [np.array([]), np.array([1.0, 2.0])], [2, 0])]
    assert isinstance(draw_metric_by_value(panels, "title"), Figure)  # a value with failures only: no box


# --- problems ---------------------------------------------------------------------------------


def test_text_from_the_experiment_is_escaped(tmp_path):
    workdir = copy_recorded(tmp_path)
    hostile = "<script>alert(1)</script> & <img src=x onerror=alert(2)>"
    write_json(trial_folder(workdir, "njzKx") / "failure.json", {"reason": hostile})
    meta_path = workdir / RECORDED_ID / "funcapprox" / "run.json"
    meta = json.loads(meta_path.read_text())
    write_json(meta_path, meta | {"space_source": "/tmp/</script><b>x</b>.json", "tuner": "<i>Grid</i>"})
    text = write_report(workdir).read_text()
    assert hostile not in text and "<b>x</b>" not in text and "<i>Grid</i>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(2)&gt;" in text
    page = Page(text)
    assert page.images and all(src.startswith("data:image/png") for src in page.images)
    assert hostile in [row[3] for row in page.table("failures", "failures")]
    assert page.kv("summary")["tuner"].startswith("<i>Grid</i>")  # shown as text, not markup


def test_custom_out(tmp_path):
    workdir = copy_recorded(tmp_path)
    out = tmp_path / "share" / "r.html"
    out.parent.mkdir()
    assert write_report(workdir, RECORDED_ID, out) == out
    assert Page(out.read_text()).section_ids == SECTION_IDS
    assert not (workdir / RECORDED_ID / "funcapprox" / REPORT_FILE).exists()


def test_out_in_a_missing_folder(tmp_path):
    workdir = copy_recorded(tmp_path)
    with pytest.raises(ConfigError, match=r"^the folder of --out .*nowhere/r.html does not exist$"):
        write_report(workdir, out=tmp_path / "nowhere" / "r.html")


def test_no_succeeded_trial(tmp_path):
    workdir = copy_recorded(tmp_path)
    with sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite") as db:
        db.execute("UPDATE TrialJobEvent SET event = 'FAILED' WHERE event = 'SUCCEEDED'")
    with pytest.raises(ExperimentError, match=f"^experiment {RECORDED_ID} has no succeeded trial yet; nothing to"):
        write_report(workdir)


def test_unknown_experiment(tmp_path):
    workdir = copy_recorded(tmp_path)
    with pytest.raises(ExperimentError, match="no experiment 'nosuch'"):
        write_report(workdir, "nosuch")


def test_missing_weights_leave_a_note_not_a_failure(tmp_path):
    workdir = copy_recorded(tmp_path)
    (trial_folder(workdir, "ud7Qq") / "model.pt").unlink()
    page = Page(write_report(workdir).read_text())
    text = " ".join(page.text["best"].split())
    assert "The best trial, ud7Qq: no figure, no saved weights at" in text
    assert "funcapprox plot --trial ud7Qq --retrain" in text
    assert page.section_ids == SECTION_IDS


# --- a fabricated arch stage ------------------------------------------------------------------


def test_arch_report_is_the_latest_experiment(arch):
    workdir, path, _ = arch
    assert path == workdir / ARCH_ID / "funcapprox" / REPORT_FILE


def test_arch_summary_names_the_hand_off(arch):
    summary = Page(arch[2]).kv("summary")
    assert summary["stage"].startswith("arch")
    assert summary["searched"] == "hidden"
    assert summary["fixed from"].startswith(f"the best trial of experiment {RECORDED_ID}: act=Tanh optimizer=Adam")
    assert summary["trials"] == "8: 1 failed, 7 succeeded"


def test_arch_front_and_smallest(arch):
    experiment = load_experiment(arch[0], ARCH_ID)
    best = experiment.best()
    page = Page(arch[2])
    front = pareto_front(experiment.trials)
    rows = page.table("pareto", "front")
    assert [row[4] for row in rows] == [t.trial_id for t in front]
    assert [row[:2] for row in rows] == [[t.arch, f"{t.n_params:,}"] for t in front]
    assert [int(row[1].replace(",", "")) for row in rows] == sorted(t.n_params for t in front)
    within = [t for t in front if t.max_error <= 2 * best.max_error]
    smallest = min(within, key=lambda t: t.n_params)
    text = " ".join(page.text["best"].split())
    if smallest is best:
        assert "The best trial is also the smallest network" in text
    else:
        assert f"is trial {smallest.trial_id}, {smallest.arch}: {smallest.n_params:,} parameters" in text
        assert f"fewer than the best trial's {best.n_params:,}" in text


def test_arch_parallel_axes_are_the_layer_sizes(arch):
    experiment = load_experiment(arch[0], ARCH_ID)
    data = parallel_data(experiment)
    assert [a["name"] for a in data["axes"]] == ["hidden_size_1", "hidden_size_2", "hidden_size_3", "metric"]
    assert len(data["lines"]) == len(ARCH_TRIALS) - 1
    layer1 = data["axes"][0]
    assert layer1["title"] == "hidden_size_1 (log)"  # 4 to 32: equal ratios, equal distances
    by_id = {line["id"]: line for line in data["lines"]}
    assert by_id["a8x8"]["text"][:3] == ["8", "8", "0"]
    assert by_id["a4"]["pos"][0] == 0.0 and by_id["a32"]["pos"][0] == 1.0


def test_arch_parameter_summaries_are_layer_1_size_and_depth(arch):
    summaries = {s.name: s for s in param_summaries(load_experiment(arch[0], ARCH_ID))}
    assert set(summaries) == {"hidden_size_1 (layer 1)", "depth (hidden layers)"}
    assert [(r.label, r.count, r.failed) for r in summaries["depth (hidden layers)"].rows] == [
        ("1", 4, 0), ("2", 2, 0), ("3", 1, 1)]
    assert [r.label for r in summaries["hidden_size_1 (layer 1)"].rows] == ["4", "8", "16", "32"]


def test_arch_failure_and_history(arch):
    page = Page(arch[2])
    assert page.table("failures", "failures") == [[ARCH_KILLED, "FAILED", "{4,4,4}", KILLED_REASON]]
    assert "metric history" in arch[2]


def test_render_is_deterministic_but_for_the_footer(arch):
    experiment = load_experiment(arch[0], ARCH_ID)
    first, second = (render_report(experiment).split("<footer>")[0] for _ in range(2))
    assert first == second


# --- in a real browser ------------------------------------------------------------------------


def _assert_not_blank(png: Path) -> None:
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[0] > 2000 and pixels.shape[1] >= 1000, pixels.shape
    colours = np.unique((pixels[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    nonwhite = (pixels < 0.97).any(axis=-1).mean()
    assert len(colours) > 50 and nonwhite > 0.01, (len(colours), nonwhite)


PAGE_STATE = """(() => ({
  sections: Array.from(document.querySelectorAll("main > section[id]")).map(s => s.id),
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]),
  lines: document.querySelectorAll("#pc-svg path.pc-line").length,
  best: Array.from(document.querySelectorAll("#pc-svg path.pc-best")).map(p => p.dataset.trial),
  axes: document.getElementById("pc-svg").dataset.order.split(","),
  svgWidth: document.getElementById("pc-svg").getBoundingClientRect().width,
  external: performance.getEntriesByType("resource").map(r => r.name),
}))()"""

AXIS_TITLE = """(name => {
  const svg = document.getElementById("pc-svg");
  svg.scrollIntoView({block: "center"});
  const r = svg.querySelector(`g.pc-axis[data-axis="${name}"] .pc-title`).getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2];
})"""


def _drag_axis(client: DevTools, name: str, dx: float) -> list[str]:
    """Drag an axis by its title `dx` CSS pixels sideways; return the new axis order."""
    x, y = client.evaluate(f"{AXIS_TITLE}({json.dumps(name)})")
    client.mouse("mousePressed", x, y)
    for step in range(1, 11):
        client.mouse("mouseMoved", x + dx * step / 10, y)
    client.mouse("mouseReleased", x + dx, y)
    return client.evaluate('document.getElementById("pc-svg").dataset.order').split(",")


@pytest.mark.browser
def test_reports_render_in_chromium(browser, recorded, arch, tmp_path):  # noqa: F811 (fixture)
    experiment = load_experiment(arch[0], ARCH_ID)
    for name, report, succeeded in (("arch", arch[1], len(ARCH_TRIALS) - 1), ("recorded", recorded[1], 2)):
        open_file(browser, report)
        state = browser.evaluate(PAGE_STATE)
        assert state["sections"] == SECTION_IDS
        assert len(state["images"]) == 5 and all(ok and width > 300 and shown > 300
                                                 for ok, width, shown in state["images"]), state["images"]
        assert state["lines"] == succeeded
        assert state["external"] == []  # nothing fetched: data URIs only
        assert state["svgWidth"] > 900
        shot = screenshot(browser, tmp_path / f"report-{name}.png")
        _assert_not_blank(shot)
        assert browser.errors() == []
    # Interactivity, on the arch report: move the first axis to the far right, then pick a value.
    open_file(browser, arch[1])
    assert browser.evaluate(PAGE_STATE)["best"] == [experiment.best().trial_id]
    before = browser.evaluate(PAGE_STATE)["axes"]
    assert before == ["hidden_size_1", "hidden_size_2", "hidden_size_3", "metric"]
    after = _drag_axis(browser, "hidden_size_1", 1000)
    assert after == ["hidden_size_2", "hidden_size_3", "metric", "hidden_size_1"]
    assert _drag_axis(browser, "metric", -1000)[0] == "metric"
    browser.evaluate("""Array.from(document.querySelectorAll('#pc-svg g.pc-axis[data-axis="hidden_size_3"] text'))
                        .find(t => t.textContent === "0").dispatchEvent(new MouseEvent("click"))""")
    dimmed = browser.evaluate('document.querySelectorAll("#pc-svg path.pc-dim").length')
    assert dimmed == 1  # only {16,16,16} has a third layer among the succeeded trials
    assert browser.evaluate('document.getElementById("pc-status").textContent').startswith(
        "hidden_size_3 = 0: 6 succeeded trials")
    screenshot(browser, tmp_path / "report-arch-interacted.png")
    assert browser.errors() == []
    # The check above can see errors: an uncaught one and a console.error both show up.
    browser.evaluate('setTimeout(() => { throw new Error("boom") }); console.error("bang"); 0')
    browser.evaluate("new Promise(r => setTimeout(r, 200))")
    seen = " ".join(browser.errors())
    assert "boom" in seen and "bang" in seen


def test_out_is_not_replaced_unless_asked(tmp_path):
    workdir = copy_recorded(tmp_path)
    out = tmp_path / "r.html"
    out.write_text("mine")
    with pytest.raises(ConfigError, match=rf"^{out} already exists; add --force to replace it, or give another --out$"):
        write_report(workdir, out=out, replace=False)
    assert out.read_text() == "mine"
    assert write_report(workdir, out=out) == out  # replace=True, the default: the experiment's own files
    assert Page(out.read_text()).section_ids == SECTION_IDS


def test_the_size_against_error_plot_draws_the_provable_floor_where_it_is_known():
    import numpy as np

    from funcapprox.floor import floor
    from funcapprox.views.plot import floor_curve

    errors = np.array([0.001, 0.01, 0.1])
    needed, levels, label = floor_curve("oscillator", (0.0, 1.0), "LeakyReLU", errors)
    assert levels.min() < 0.001 and levels.max() > 0.1 and "LeakyReLU" in label
    assert list(needed) == [floor("oscillator", (0.0, 1.0), float(e), "LeakyReLU").needed_params for e in levels]
    assert list(needed) == sorted(needed, reverse=True)  # a looser max error never needs more
    assert floor_curve("oscillator", (0.0, 1.0), "Tanh", errors) is None
    assert floor_curve("sin(6*x)", (0.0, 1.0), "ReLU", errors) is None


def test_what_matters_lists_each_searched_setting_with_its_share(recorded):
    from funcapprox.importance import importance
    from funcapprox.nni.store import load_experiment

    workdir, _, text = recorded
    expected = importance(load_experiment(workdir, RECORDED_ID))
    section = text[text.index('<section id="importance">'):]
    section = section[: section.index("</section>")]
    assert expected.method in section
    for effect in expected.effects:
        assert f"<td>{effect.name}</td><td class=num>{effect.share:.1%}</td>" in section
    assert f"{expected.interactions_share:.1%}" in section
