"""Writing outputs: modes from the umask and kept on rewrite, paths that are not regular files
refused, nothing partial left after a failure; and each through the CLI a user would meet."""

import os
import stat
import subprocess
import sys

import pytest

from scaling.config import ConfigError
from scaling.fileio import atomic_folder, atomic_path, write_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_file_has_the_umasks_mode_and_a_rewrite_keeps_its_own(tmp_path, umask_022):
    path = tmp_path / "fit.json"
    write_atomic(path, "{}")
    assert mode(path) == 0o644  # mkstemp's 0600 made shared runs unreadable to a lab
    path.chmod(0o640)
    write_atomic(path, "{ }")
    assert mode(path) == 0o640 and path.read_text() == "{ }"
    with atomic_folder(tmp_path / "export") as folder:
        (folder / "weights").write_text("w")
    assert mode(tmp_path / "export") == 0o755


@pytest.fixture
def device_node(tmp_path):
    """A character device like /dev/null, of the test's own: if the refusal ever failed, a
    test writing to the real /dev/null as root would replace it for the whole machine."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return node


@pytest.mark.parametrize("target", ["device", "folder"])
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path, target, request):
    if target == "device":
        path = request.getfixturevalue("device_node")
    else:
        (path := tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="give the name of a file"):
        write_atomic(path, "x")
    assert os.path.exists(path) and not os.path.isfile(path)  # left as it was


def test_a_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "figure.png"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half a figure")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "old").write_text("kept")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "export") as folder:
        (folder / "new").write_text("half")
        raise RuntimeError("the writer failed")
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def scaling(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def one_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_outputs_onto_wrong_paths_are_one_line(tmp_path, device_node):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "a-folder").mkdir()
    one_line(
        scaling("fit", "builtin:chinchilla", "--law", "isoflop", "--out", str(device_node)),
        "null: is not a regular file",
    )
    assert stat.S_ISCHR(os.stat(device_node).st_mode)
    one_line(
        scaling(
            "fit", "builtin:chinchilla", "--law", "isoflop", "--out", str(tmp_path / "a-folder")
        ),
        "is a folder",
    )
    one_line(
        scaling("plot", "builtin:chinchilla", "--out", str(tmp_path / "a-file")),
        "a-file: is a file, not a folder",
    )
    one_line(
        scaling("published", "chinchilla", "--csv", str(tmp_path / "missing" / "points.csv")),
        "no folder",
    )
    one_line(
        scaling("plan", "sweeps/demo.toml", "--out", str(tmp_path / "a-file"), cwd=REPO),
        "a-file: is a file",
    )
    assert (tmp_path / "a-file").read_text() == "mine"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fill(mount) -> None:
    with (mount / "filler").open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_leaves_no_cut_csv_and_no_empty_figure(tmpfs):
    fill(tmpfs)
    one_line(
        scaling("published", "chinchilla", "--csv", str(tmpfs / "points.csv")),
        "no space left",
    )
    assert not (tmpfs / "points.csv").exists()  # a rerun is not refused by a cut file
    done = scaling("plot", "builtin:chinchilla", "--out", str(tmpfs / "figures"))
    assert done.returncode == 2 and "no space left" in done.stderr, done.stderr
    assert not [p for p in tmpfs.rglob("*.png")]
    (tmpfs / "filler").unlink()
    assert scaling("published", "chinchilla", "--csv", str(tmpfs / "points.csv")).returncode == 0


@pytest.mark.slow
def test_a_read_only_mount_is_one_line(tmpfs):
    remount = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True)
    if remount.returncode:
        pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
    one_line(
        scaling("fit", "builtin:chinchilla", "--law", "isoflop", "--out", str(tmpfs / "f.json")),
        "Read-only file system",
    )
