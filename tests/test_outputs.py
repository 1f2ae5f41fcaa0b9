"""Outputs never destroy what they point at (issue 15, item 5): every ``--out`` and ``--plot`` refuses a
device, a named pipe, a socket, a folder (for a file), and any input file of the run, with one line and
exit 2, leaving the target as it was; a symbolic link is written through, never replaced."""

import os
import shutil
import socket
import stat

import pytest

from pfps_meta.cli import main
from pfps_meta.errors import InputError
from pfps_meta.present import outputs
from tests.conftest import ROOT

TABLES = ("trials.csv", "outcomes.csv", "effects.csv", "published.csv")
YI_VI = "study,yi,vi\nA,0.1,0.04\nB,0.3,0.05\nC,0.2,0.06\n"


@pytest.fixture
def project(tmp_path):
    """A copy of the Nascimento 2018 definition and the curated tables, plus a one-analysis spec."""
    (tmp_path / "analyses").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "analyses" / "nascimento2018.toml", tmp_path / "analyses" / "nascimento2018.toml")
    for table in TABLES:
        shutil.copy(ROOT / "data" / table, tmp_path / "data" / table)
    (tmp_path / "data" / "small.csv").write_text(YI_VI)
    (tmp_path / "analyses" / "small.toml").write_text(
        f'[review]\nid = "r"\n[[analyses]]\nid = "a"\ndata = "{tmp_path / "data" / "small.csv"}"\n')
    return tmp_path


def _snapshot(root):
    """Every entry below ``root``: its type and, for a file, its bytes; for a link, where it points."""
    seen = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            seen[path] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            seen[path] = ("file", path.read_bytes())
        else:
            seen[path] = (stat.S_IFMT(info.st_mode),)
    return seen


def _refused(capsys, code, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("pfps-meta: error:"), err
    for word in words:
        assert word in err[0], err[0]


def _make(project, kind):
    """A target of the given kind in the project folder; returns its path (as a string)."""
    target = project / "target"
    if kind == "pipe":
        os.mkfifo(target)
    elif kind == "device":                  # a null device of our own: the test never risks /dev/null
        if os.geteuid() != 0:
            pytest.skip("only root can make a device node")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
        server.close()
    elif kind == "folder":
        target.mkdir()
        (target / "keep.txt").write_text("keep")
    elif kind == "spec":
        return str(project / "analyses" / "nascimento2018.toml")
    elif kind == "data":
        return str(project / "data" / "outcomes.csv")
    elif kind == "link-to-data":
        target.symlink_to(project / "data" / "outcomes.csv")
    elif kind == "link-to-pipe":
        os.mkfifo(project / "fifo")
        target.symlink_to(project / "fifo")
    elif kind == "dangling-link":
        target.symlink_to(project / "nowhere" / "sheet.csv")
    elif kind == "link-loop":
        target.symlink_to(project / "target2")
        (project / "target2").symlink_to(target)
    elif kind == "empty":
        return ""
    elif kind == "inside-a-file":
        (project / "plain").write_text("x")
        return str(project / "plain" / "sheet.csv")
    return str(target)


BAD_FILE_TARGETS = ["device", "pipe", "socket", "folder", "spec", "data", "link-to-data", "link-to-pipe", "dangling-link",
                    "link-loop", "empty", "inside-a-file"]


@pytest.mark.parametrize("kind", BAD_FILE_TARGETS)
def test_template_out_refuses_what_it_would_destroy(project, capsys, kind):
    out = _make(project, kind)
    before = _snapshot(project)
    code = main(["template", str(project / "analyses" / "nascimento2018.toml"), "--out", out])
    _refused(capsys, code, "--out")
    assert _snapshot(project) == before          # nothing changed: no file written, replaced or removed


def test_template_out_writes_through_a_symlink_and_keeps_the_link(project, capsys):
    sheet = project / "sheet.csv"
    sheet.write_text("old")
    link = project / "link.csv"
    link.symlink_to(sheet)
    spec = str(project / "analyses" / "nascimento2018.toml")
    assert main(["template", spec]) == 0
    expected = capsys.readouterr().out
    assert main(["template", spec, "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(sheet)
    assert sheet.read_text() == expected
    assert "wrote" in capsys.readouterr().err
    assert not [p for p in project.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root could replace /dev/null")
def test_template_out_refuses_dev_null_and_leaves_the_device(project, capsys):
    code = main(["template", str(project / "analyses" / "nascimento2018.toml"), "--out", "/dev/null"])
    _refused(capsys, code, "device")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("kind", ["device", "pipe", "folder", "link-to-pipe", "empty", "data", "link-loop"])
def test_simulate_plot_refuses_bad_targets_before_running(project, capsys, kind):
    stem = _make(project, kind)
    if kind == "data":
        stem = str(project / "data" / "small.csv")        # given as the design: an input of this run
        (project / "data" / "small.csv").write_text("n_exp,n_ctrl\n20,21\n15,14\n30,29\n")
    before = _snapshot(project)
    args = ["simulate", "--replicates", "10", "--plot", stem]
    if kind == "data":
        args += ["--design", stem]
    code = main(args)
    _refused(capsys, code, "--plot")
    assert _snapshot(project) == before


def test_simulate_plot_refuses_a_spec_data_file_as_its_target(project, capsys):
    before = _snapshot(project)
    code = main(["simulate", str(project / "analyses" / "nascimento2018.toml"), "--analysis", "B1",
                 "--replicates", "10", "--plot", str(project / "data" / "outcomes.csv")])
    _refused(capsys, code, "input file")
    assert _snapshot(project) == before


def test_simulate_plot_refuses_a_folder_named_like_its_png(project, capsys):
    (project / "cov.png").mkdir()
    code = main(["simulate", "--replicates", "10", "--plot", str(project / "cov")])
    _refused(capsys, code, "folder")
    assert not (project / "cov.svg").exists()


@pytest.mark.parametrize("kind", ["device", "pipe", "socket", "empty", "data-folder", "project-folder", "dangling-link",
                                  "link-loop", "file"])
def test_report_out_refuses_what_it_would_destroy(project, capsys, kind):
    if kind == "data-folder":
        out = str(project / "data")
    elif kind == "project-folder":
        out = str(project)
    elif kind == "file":
        out = str(project / "data" / "small.csv")
    else:
        out = _make(project, kind)
    before = _snapshot(project)
    code = main(["report", str(project / "analyses" / "small.toml"), "--out", out])
    _refused(capsys, code, "--out")
    assert _snapshot(project) == before


def test_report_out_through_a_symlink_fills_its_target_and_keeps_the_link(project, capsys):
    real = project / "real-reports"
    real.mkdir()
    (real / ".gitkeep").write_text("")
    link = project / "reports"
    link.symlink_to(real)
    assert main(["report", str(project / "analyses" / "small.toml"), "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert (real / "index.html").is_file() and (real / ".gitkeep").exists()
    assert "wrote" in capsys.readouterr().err


def test_report_out_through_a_dangling_symlink_creates_its_target(project, capsys):
    link = project / "reports"
    link.symlink_to(project / "new-reports")
    assert main(["report", str(project / "analyses" / "small.toml"), "--out", str(link)]) == 0
    assert link.is_symlink() and (project / "new-reports" / "report.md").is_file()


def test_atomic_write_checks_every_target_and_respects_protected_inputs(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="named pipe"):
        outputs.atomic_write_text(tmp_path / "fifo", "x")
    with pytest.raises(InputError, match="folder"):
        outputs.atomic_write_text(tmp_path, "x")
    data = tmp_path / "in.csv"
    data.write_text("keep")
    hard = tmp_path / "hard.csv"
    os.link(data, hard)
    with outputs.protect([data]):
        for target in (data, hard):               # a hard link is the same file
            with pytest.raises(InputError, match="input file"):
                outputs.atomic_write_text(target, "x")
    assert data.read_text() == "keep"
    outputs.atomic_write_text(hard, "now")         # outside the block: an ordinary file again (replaced
    assert hard.read_text() == "now" and data.read_text() == "keep"       # atomically: the link is broken)
    with pytest.raises(InputError, match="must be a path"):
        outputs.check_target(3)
