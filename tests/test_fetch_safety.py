"""What a remote machine's tar may put into the experiment folder (funcapprox.nni.remote._receive, the unpacking
fetch_trials streams ssh's output through): hostile archives are refused whole, and the folder is unchanged."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest
from helpers.files import snapshot

from funcapprox.errors import ExperimentError
from funcapprox.nni.remote import _receive

TRIAL = "environments/remote-worker1/trials/AbC12"
SOURCE = "of exp1 from alice@gpu1:22"




@pytest.fixture
def experiment(tmp_path) -> Path:
    """An experiment folder as NNI and funcapprox leave it, with one trial already fetched."""
    folder = tmp_path / "exp1"
    for rel, data in {"db/nni.sqlite": b"SQLite format 3\0store", "funcapprox/run.json": b'{"stage": "nonarch"}',
                      "funcapprox/search_space.json": b"{}", "log/nnimanager.log": b"log\n",
                      f"{TRIAL}/config.json": b'{"old": true}'}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def member(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
           link: str = "", **pax) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    if pax:
        info.pax_headers = pax
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) and data is not None:
        info.size = len(data)
    return info, data


def folder(name: str) -> tuple[tarfile.TarInfo, None]:
    return member(name, None, tarfile.DIRTYPE, 0o755)


def tar(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.size else None)
    return buffer.getvalue()


def piped(data: bytes):
    """A pipe's read end with `data` written into it from a thread, as ssh's stdout would be."""
    read_fd, write_fd = os.pipe()

    def send():
        with os.fdopen(write_fd, "wb") as out:
            try:
                out.write(data)
            except BrokenPipeError:  # the reader refused the archive before its end
                pass

    threading.Thread(target=send, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def receive(data: bytes, target: Path, **limits) -> bool:
    with piped(data) as stream:
        return _receive(stream, target, SOURCE, **limits)


GOOD = (folder(TRIAL), member(f"{TRIAL}/model.pt", b"weights"))

HOSTILE = [
    ("symlink", [*GOOD, member(f"{TRIAL}/run.json", None, tarfile.SYMTYPE, link="../../../../funcapprox/run.json")],
     f"member '{TRIAL}/run.json' is a symbolic link (to '../../../../funcapprox/run.json')"),
    ("hardlink", [*GOOD, member(f"{TRIAL}/db", None, tarfile.LNKTYPE, link="db/nni.sqlite")],
     f"member '{TRIAL}/db' is a hard link (to 'db/nni.sqlite')"),
    ("parent", [member("../escape")], "member '../escape' has a '..' component"),
    ("parent inside", [*GOOD, member(f"{TRIAL}/../../../../db/nni.sqlite")], "has a '..' component"),
    ("absolute", [member("/tmp/x")], "member '/tmp/x' has an absolute name"),
    ("store", [*GOOD, member("db/nni.sqlite", b"evil")],
     "member 'db/nni.sqlite' is not inside environments/remote-worker<N>/trials/<trial>/"),
    ("funcapprox", [member("funcapprox/run.json", b"{}")], "member 'funcapprox/run.json' is not inside"),
    ("log", [member("log/nnimanager.log")], "member 'log/nnimanager.log' is not inside"),
    ("top", [member("evil.txt")], "member 'evil.txt' is not inside"),
    ("top folder", [folder("environments")], "member 'environments' is not inside"),
    ("worker level", [member("environments/remote-worker1/x")], "is not inside"),
    ("other worker name", [member("environments/local-worker1/trials/AbC12/x")], "is not inside"),
    ("worker without number", [member("environments/remote-workerX/trials/AbC12/x")], "is not inside"),
    ("file as trial", [member(TRIAL)], f"member '{TRIAL}' is not inside"),
    ("bad trial id", [member("environments/remote-worker1/trials/a.b/x")],
     "is in 'a.b', which is not a trial id"),
    ("device", [*GOOD, member(f"{TRIAL}/tty", None, tarfile.CHRTYPE)], f"member '{TRIAL}/tty' is a device node"),
    ("block device", [member(f"{TRIAL}/sda", None, tarfile.BLKTYPE)], "is a device node"),
    ("fifo", [member(f"{TRIAL}/pipe", None, tarfile.FIFOTYPE)], "is a FIFO"),
    ("sparse", [member(f"{TRIAL}/sparse", None, tarfile.GNUTYPE_SPARSE)], "is of tar type b'S'"),
    ("contiguous", [member(f"{TRIAL}/c", b"x", tarfile.CONTTYPE)], "is of tar type b'7'"),
    ("empty name", [folder("/")], "member '' has an empty name"),
    ("NUL", [member(f"{TRIAL}/ab", path=f"{TRIAL}/a\0b")], "has a NUL, backslash or control character"),
    ("backslash", [member(f"{TRIAL}/..\\..\\x")], "has a NUL, backslash or control character"),
    ("newline", [member(f"{TRIAL}/a\nb")], "has a NUL, backslash or control character"),
    ("not UTF-8", [member(f"{TRIAL}/a", path=f"{TRIAL}/\udcff")], "has a name that is not UTF-8"),
    ("empty component", [member(f"{TRIAL}//x")], "has an empty or '.' component"),
    ("dot component", [member(f"./{TRIAL}/x")], "has an empty or '.' component"),
    ("too long", [member(f"{TRIAL}/" + "a" * 300)], "has a name too long"),
    ("too big", [*GOOD, member(f"{TRIAL}/huge", b"0" * 2000)],
     f"member '{TRIAL}/huge' is 2000 bytes, over the limit of 1000 bytes per file"),
    ("twice", [*GOOD, member(f"{TRIAL}/model.pt", b"other")], f"member '{TRIAL}/model.pt' appears twice"),
    ("inside a file", [*GOOD, member(f"{TRIAL}/model.pt/x")], "lies inside '" + TRIAL + "/model.pt', a file"),
    ("file over a folder", [member(f"{TRIAL}/a/b"), member(f"{TRIAL}/a")], "other members lie inside it"),
]


@pytest.mark.parametrize(("members", "message"), [pytest.param(m, e, id=i) for i, m, e in HOSTILE])
def test_a_hostile_archive_is_refused_whole_and_nothing_changes(experiment, members, message):
    before = snapshot(experiment)
    with pytest.raises(ExperimentError) as error:
        receive(tar(*members), experiment, max_member=1000)
    assert str(error.value).startswith(f"refused the trial files {SOURCE}: ")
    assert message in str(error.value) and str(error.value).endswith("; nothing was written")
    assert snapshot(experiment) == before


def test_the_archive_is_refused_over_its_size_limit_while_it_streams(experiment):
    before = snapshot(experiment)
    data = tar(*GOOD, member(f"{TRIAL}/big", b"0" * 100_000))
    with pytest.raises(ExperimentError, match=f"refused the trial files {SOURCE}: the archive is over the limit of "
                                              "50000 bytes; nothing was written"):
        receive(data, experiment, max_archive=50_000)
    assert snapshot(experiment) == before
    assert receive(data, experiment, max_archive=len(data)) is True  # exactly the limit is fine


def test_too_many_members(experiment):
    before = snapshot(experiment)
    with pytest.raises(ExperimentError, match="more than 3 files and folders; nothing was written"):
        receive(tar(*GOOD, member(f"{TRIAL}/a"), member(f"{TRIAL}/b")), experiment, max_members=3)
    assert snapshot(experiment) == before


@pytest.mark.parametrize(("data", "message"), [
    (b"this is no tar archive, whatever the machine says" * 20, "not a tar archive"),
    (gzip.compress(tar(*GOOD)), "not a tar archive"),  # uncompressed only: no decompression bombs
    (tar(*GOOD, member(f"{TRIAL}/cut", b"0" * 5000))[:3000], "is cut short"),
])
def test_what_is_no_whole_tar_is_refused(experiment, data, message):
    before = snapshot(experiment)
    with pytest.raises(ExperimentError, match=f"refused the trial files {SOURCE}: .*{message}"):
        receive(data, experiment)
    assert snapshot(experiment) == before


@pytest.mark.parametrize("link", ["trial", "environments", "file", "dangling"])
def test_nothing_is_written_through_a_symbolic_link_here(experiment, tmp_path, link):
    """A destination that is a symbolic link (a folder on the way, or the file itself) refuses the archive."""
    outside = tmp_path / "outside"
    outside.mkdir()
    if link == "trial":
        (experiment / "environments/remote-worker1/trials/Zz9").symlink_to(experiment / "funcapprox")
        members, via = [member("environments/remote-worker1/trials/Zz9/run.json", b"{}")], \
            "environments/remote-worker1/trials/Zz9"
    elif link == "environments":
        (experiment / "environments").rename(tmp_path / "moved")
        (experiment / "environments").symlink_to(outside)
        members, via = list(GOOD), "environments"
    elif link == "file":
        (experiment / TRIAL / "model.pt").symlink_to(experiment / "db/nni.sqlite")
        members, via = list(GOOD), f"{TRIAL}/model.pt"
    else:
        (experiment / TRIAL / "model.pt").symlink_to(outside / "planted")
        members, via = list(GOOD), f"{TRIAL}/model.pt"
    before = snapshot(experiment)
    with pytest.raises(ExperimentError, match=f"would be written through '{via}', a symbolic link here; "
                                              "nothing was written"):
        receive(tar(*members), experiment)
    assert snapshot(experiment) == before and not any(outside.iterdir())


def test_a_file_never_replaces_a_folder_here(experiment):
    (experiment / TRIAL / ".nni").mkdir()
    before = snapshot(experiment)
    with pytest.raises(ExperimentError, match=f"member '{TRIAL}/.nni' would replace '{TRIAL}/.nni', which is a "
                                              "folder here"):
        receive(tar(*GOOD, member(f"{TRIAL}/.nni")), experiment)
    assert snapshot(experiment) == before


def test_a_sender_that_failed_leaves_nothing(experiment):
    """fetch_trials checks ssh's exit code once its output ends (finished): a failed tar's partial archive
    is not unpacked."""
    before = snapshot(experiment)

    def finished():
        raise ExperimentError("cannot pack the trials of exp1 on alice@gpu1:22: tar: read error")

    with piped(tar(*GOOD)) as stream, pytest.raises(ExperimentError, match="tar: read error"):
        _receive(stream, experiment, SOURCE, finished=finished)
    assert snapshot(experiment) == before


def test_a_good_archive_is_unpacked_with_this_computers_modes(experiment):
    second = "environments/remote-worker2/trials/Qq_7-x"
    data = tar(folder("environments/remote-worker1/trials"), folder(TRIAL), folder(f"{TRIAL}/.nni"),
               member(f"{TRIAL}/config.json", b'{"new": true}', mode=0o4777),  # setuid and world-writable remotely
               member(f"{TRIAL}/model.pt", b"\0weights" * 1000, mode=0o600),
               member(f"{TRIAL}/.nni/metrics", b"ME00000010", kind=tarfile.AREGTYPE),
               member(f"{TRIAL}/empty", b""),
               member(f"{second}/trial.stdout", b"out\n"))  # its folders are implied
    os.link(experiment / "funcapprox/run.json", experiment / TRIAL / "model.pt")  # replaced, never written through
    untouched = {k: v for k, v in snapshot(experiment).items() if not k.startswith("environments")}
    old = os.umask(0o022)
    try:
        assert receive(data, experiment) is True
    finally:
        os.umask(old)
    after = snapshot(experiment)
    assert {k: v for k, v in after.items() if not k.startswith("environments")} == untouched
    assert (experiment / TRIAL / "config.json").read_bytes() == b'{"new": true}'
    assert (experiment / TRIAL / "model.pt").read_bytes() == b"\0weights" * 1000
    assert (experiment / TRIAL / ".nni/metrics").read_bytes() == b"ME00000010"
    assert (experiment / TRIAL / "empty").read_bytes() == b""
    assert (experiment / second / "trial.stdout").read_bytes() == b"out\n"
    files = [p for p in (experiment / "environments").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["config.json", "empty", "metrics", "model.pt", "trial.stdout"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files)  # the umask's, never setuid
    made = [experiment / TRIAL / ".nni", *(experiment / "environments/remote-worker2").rglob("*")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in made if p.is_dir())


def test_nothing_received_is_no_archive(experiment):
    before = snapshot(experiment)
    assert receive(b"", experiment) is False
    assert snapshot(experiment) == before
