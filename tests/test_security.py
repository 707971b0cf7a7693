"""No way in: what someone other than the user sees of a running search.

Played as the attacker would: the listening sockets from /proc/net/tcp*, whole response
bodies outside the secret URL prefix, every process's command line, the modes of every file
that holds the prefix. The preload that NNI's manager runs with is also tested on its own,
with NNI's bundled Node.js and a bare HTTP server.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import browser  # noqa: F401 (a fixture: headless Chromium)
from helpers.nni import LOOPBACK, funcapprox, listening_addresses, nni_workdir

from funcapprox.nni.launch import PRELOAD
from funcapprox.nni.store import load_experiment
from funcapprox.results import experiment_ids, read_meta

PREFIX_VARIABLES = ("NODE_OPTIONS", "FUNCAPPROX_URL_PREFIX", "FUNCAPPROX_LISTEN")








def get(url: str) -> tuple[int, bytes]:
    """Status and the whole body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def command_lines_holding(secret: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if secret.encode() in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]!r}")
    return found


def environments(marker: bytes) -> dict[int, list[bytes]]:
    """The environment of every process whose environment holds `marker`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(marker in item for item in environ):
                found[int(entry.name)] = environ
    return found


def files_holding(secret: str, roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
                found.append(path)
    return found


def manifest() -> Path:
    return Path.home() / "nni-experiments" / ".experiment"


def assert_private(paths: list[Path], top: Path) -> None:
    """Each file 0600, and every folder from it up to `top` 0700."""
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
        if top in path.parents:
            folder = path.parent
            while folder != top.parent:
                assert stat.S_IMODE(folder.stat().st_mode) == 0o700, (folder, oct(folder.stat().st_mode))
                folder = folder.parent


def assert_no_way_in(port: int, prefix: str, experiment_folder: Path, recorded: bool = True) -> None:
    """`recorded`: run.json holds this prefix (a search's manager; a viewing one is not recorded)."""
    assert listening_addresses(port) == LOOPBACK
    for path in ("/", "/api/v1/nni/check-status", "/api/v1/nni/trial-jobs", "/oview", f"/{prefix[:16]}",
                 f"/x{prefix}/api/v1/nni/check-status", "/logs/nnimanager.log", "/no/such/page"):
        status, body = get(f"http://127.0.0.1:{port}{path}")
        assert status == 404 and prefix.encode() not in body and prefix[:8].encode() not in body, (path, body)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # a WebSocket upgrade outside it
        raw.sendall(b"GET /tuner HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 404") and prefix.encode() not in answer
    assert command_lines_holding(prefix) == []
    holding = files_holding(prefix, [experiment_folder, manifest()])
    assert manifest() in holding and (experiment_folder / "funcapprox" / "run.json" in holding) == recorded
    assert_private(holding, experiment_folder)
    assert stat.S_IMODE(experiment_folder.stat().st_mode) == 0o700


@pytest.fixture
def workdir(tmp_path):
    yield from nni_workdir(tmp_path)


@pytest.mark.nni
def test_a_search_left_up_has_no_way_in_but_its_owners(workdir, tmp_path, browser):  # noqa: F811 (fixture)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"_type": "choice", "_value": [0.005, 0.01, 0.02, 0.03]}}))
    search = subprocess.Popen(
        [sys.executable, "-m", "funcapprox", "search", "--stage", "nonarch", "--func", "square", "--space",
         str(space), "--epochs", "40", "--keep-ui"], env={**os.environ, "FUNCAPPROX_WORKDIR": str(workdir)},
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trial_environments: dict[int, list[bytes]] = {}
    try:
        while search.poll() is None:  # the trials' and the tuner's environments, read while they run
            for exp_id in experiment_ids(workdir):
                trial_environments |= environments(f"NNI_EXP_ID={exp_id}".encode())
            time.sleep(0.02)
        out, err = search.communicate(timeout=60)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 0, err + out
    (exp_id,) = experiment_ids(workdir)
    meta = read_meta(workdir / exp_id)
    port, prefix = meta["port"], meta["url_prefix"]
    assert f"web UI still up at http://127.0.0.1:{port}/{prefix};" in out and len(prefix) == 32
    assert_no_way_in(port, prefix, workdir / exp_id)

    # The tuner and every trial seen: started by the manager, without the manager's preload or prefix.
    tuner = {pid: env for pid, env in environments(b"NNI_TUNER_COMMAND_CHANNEL=").items()
             if any(exp_id.encode() in item for item in env)}
    children = trial_environments | tuner
    assert tuner and len(children) > len(tuner), "no trial process was seen while the search ran"
    for pid, env in children.items():
        assert not [item for item in env if item.split(b"=")[0].decode() in PREFIX_VARIABLES], pid

    # The owner still has it all: the API, and the web UI in a real browser, under the prefix.
    status, body = get(f"http://127.0.0.1:{port}/{prefix}/api/v1/nni/trial-jobs")
    assert status == 200 and len(json.loads(body)) == 4
    _open_url(browser, f"http://127.0.0.1:{port}/{prefix}/detail")
    trial_ids = [t.trial_id for t in load_experiment(workdir, exp_id).trials]
    shown = _wait_for_text(browser, trial_ids)
    assert all(t in shown for t in trial_ids), shown[:2000]

    # `experiments --stop`, then `--view`: a new manager, a new prefix, the same lock.
    stopped = funcapprox("experiments", "--stop", exp_id, workdir=workdir)
    assert stopped.returncode == 0 and listening_addresses(port) == set(), stopped.stderr
    viewed = funcapprox("experiments", "--view", exp_id, workdir=workdir)
    assert viewed.returncode == 0, viewed.stderr
    url = viewed.stdout.split(" at ")[1].split(";")[0]
    view_port, view_prefix = int(url.split(":")[2].split("/")[0]), url.rsplit("/", 1)[1]
    assert view_prefix != prefix and get(f"{url}/api/v1/nni/check-status")[0] == 200
    assert_no_way_in(view_port, view_prefix, workdir / exp_id, recorded=False)
    assert funcapprox("experiments", "--stop", exp_id, workdir=workdir).returncode == 0


def _open_url(client, url: str) -> None:
    for domain in ("Page", "Runtime", "Log"):
        client.page(f"{domain}.enable")
    client.page("Page.navigate", url=url)
    client.wait_for("Page.loadEventFired")


def _wait_for_text(client, words: list[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = client.evaluate("document.body ? document.body.innerText : ''") or ""
        if all(w in text for w in words) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


# --- the preload on its own, in NNI's bundled Node.js -----------------------------------------

SERVER = """
const http = require('http');
const server = http.createServer((req, res) => res.end('inside ' + req.url));
server.on('upgrade', (req, socket) => socket.end('HTTP/1.1 101 Switching Protocols\\r\\n\\r\\n'));
server.listen(Number(process.argv[process.argv.indexOf('--port') + 1]), () => {
  const leaked = Object.keys(process.env).filter(k => k.startsWith('FUNCAPPROX_') || k === 'NODE_OPTIONS');
  console.log(JSON.stringify({leaked, argv: process.argv.slice(2), port: server.address().port}));
});
"""


@pytest.fixture
def node_server(tmp_path):
    import nni_node

    node = Path(nni_node.__path__[0]) / "node"
    script = tmp_path / "server.js"
    script.write_text(SERVER)
    started = []

    def start(prefix: str, listen: str = "") -> tuple[dict, subprocess.Popen]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "NODE_OPTIONS": f'--require "{PRELOAD}"', "FUNCAPPROX_URL_PREFIX": prefix,
               "FUNCAPPROX_LISTEN": listen}
        process = subprocess.Popen([str(node), str(script), "--port", str(port)], env=env, stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        info = json.loads(process.stdout.readline())
        deadline = time.monotonic() + 10
        while len(listening_addresses(port)) < len(LOOPBACK) + bool(listen) and time.monotonic() < deadline:
            time.sleep(0.05)  # the extra listeners start a moment after the first
        return info, process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_the_preload_binds_loopback_and_the_given_address_only(node_server):
    info, _ = node_server("s3cret", listen="127.0.0.2")
    assert listening_addresses(info["port"]) == LOOPBACK | {"127.0.0.2"}
    assert info["leaked"] == []  # gone from what the server's children inherit
    assert info["argv"][-2:] == ["--url-prefix", "s3cret"]  # NNI's argument parser finds it there
    for host in ("127.0.0.1", "127.0.0.2", *(["[::1]"] if "::1" in LOOPBACK else [])):
        assert get(f"http://{host}:{info['port']}/s3cret/api") == (200, b"inside /s3cret/api")


def test_the_preload_answers_a_bare_404_outside_the_prefix(node_server):
    info, _ = node_server("s3cret")
    port = info["port"]
    assert get(f"http://127.0.0.1:{port}/s3cret") == (200, b"inside /s3cret")
    assert get(f"http://127.0.0.1:{port}/s3cret/?q=1") == (200, b"inside /s3cret/?q=1")
    for path in ("/", "/s3cre", "/s3crett/api", "/x/s3cret/", "/S3CRET/api", "/%733cret/api"):
        assert get(f"http://127.0.0.1:{port}{path}") == (404, b"Not Found"), path
    for path, first_line in (("/s3cret/tuner", b"HTTP/1.1 101"), ("/tuner", b"HTTP/1.1 404")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                        .encode())
            assert raw.recv(4096).startswith(first_line), path


def test_without_a_prefix_the_preload_still_binds_loopback(node_server):
    info, _ = node_server("")
    assert listening_addresses(info["port"]) == LOOPBACK
    assert get(f"http://127.0.0.1:{info['port']}/anything") == (200, b"inside /anything")
