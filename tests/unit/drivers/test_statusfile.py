"""drivers/statusfile.py: the daemon's status files, as `calfwd status`, doctor and NPD read them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from calfwd.drivers import statusfile

CHECK = Path(__file__).resolve().parents[3] / "packaging" / "npd" / "calfwd-npd-check"


def doc(**changes):
    base = {"schema": 1, "pid": os.getpid(), "pid_start": statusfile.process_start(os.getpid()),
            "updated": 1000.0, "state": "ok"}
    base.update(changes)
    return base


def test_files_are_world_readable_even_under_the_units_umask_and_replaced_whole(tmp_path):
    old = os.umask(0o077)
    try:
        statusfile.publish(doc(), "ok calfwd: in sync", str(tmp_path / "run"))
    finally:
        os.umask(old)
    for name in ("status.json", "health"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run" / "health").read_text() == "ok calfwd: in sync\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["health", "status.json"]


def test_a_symlink_in_place_of_a_temporary_file_is_never_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json.tmp").symlink_to(target)
    try:
        statusfile.publish(doc(), "ok x", str(tmp_path / "run"))
    except OSError:
        pass
    assert target.read_text() == "precious\n"


def test_only_a_live_current_daemons_file_counts(tmp_path):
    run = str(tmp_path)
    statusfile.publish(doc(updated=1000.0), "ok x", run)
    assert statusfile.read_running(run, now=lambda: 1010.0)["pid"] == os.getpid()
    assert statusfile.read_running(run, now=lambda: 1000.0 + statusfile.STALE_AFTER + 1) is None, "hung"
    for bad in (dict(pid_start="1"), dict(pid=True), dict(pid=0), dict(schema=2), dict(updated=None)):
        statusfile.publish(doc(**bad), "ok x", run)
        assert statusfile.read_running(run, now=lambda: 1010.0) is None, bad
    dead = subprocess.Popen(["true"])
    dead.wait()
    statusfile.publish(doc(pid=dead.pid, pid_start=None), "ok x", run)
    assert statusfile.read_running(run, now=lambda: 1010.0) is None
    assert statusfile.read_previous(run)["pid"] == dead.pid, "a restart still learns what it saw"
    (tmp_path / "status.json").write_text("{not json")
    assert statusfile.read_running(run) is None and statusfile.read_previous(run) is None


def test_cleanup_removes_the_files_and_the_directory_but_nobody_elses(tmp_path):
    run = tmp_path / "run"
    statusfile.publish(doc(), "ok x", str(run))
    assert statusfile.remove(str(run)) == f"status files status.json, health in {run}"
    assert not run.exists()
    statusfile.publish(doc(), "ok x", str(run))
    (run / "someone-elses").write_text("")
    statusfile.remove(str(run))
    assert sorted(p.name for p in run.iterdir()) == ["someone-elses"]
    assert statusfile.remove(str(tmp_path / "never")) is None


def npd(tmp_path, line: str, **env):
    health = tmp_path / "health"
    health.write_text(line)
    return subprocess.run([str(CHECK)], capture_output=True, text=True, timeout=10,
                          env={"PATH": "/usr/bin:/bin", "CALFWD_HEALTH_FILE": str(health), **env})


def test_npd_check_prints_the_line_verbatim_and_refuses_a_bad_age_limit(tmp_path):
    out = npd(tmp_path, "blocked BLOCKED: a\\cb\n")
    assert (out.returncode, out.stdout) == (1, "blocked BLOCKED: a\\cb\n")
    bad = npd(tmp_path, "ok calfwd: in sync\n", CALFWD_HEALTH_MAX_AGE="5m")
    assert bad.returncode == 2 and bad.stdout.count("\n") == 1
    assert json.loads(json.dumps(out.stdout))  # one line of text, nothing else


# -- a directory others can write, or a link planted there, is never written through ----------

def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_a_directory_others_can_write_is_refused_with_one_line_and_nothing_written(tmp_path):
    """Outside systemd (no RuntimeDirectory=), CALFWD_RUN_DIR or /run/calfwd may be anyone's."""
    run = tmp_path / "run"
    for change, why in ((lambda: run.chmod(0o777), "anyone can write it (mode 0777)"),
                        (lambda: run.chmod(0o1777), "anyone can write it (mode 1777)"),
                        (lambda: os.chown(run, 65534, 0), "owned by uid 65534"),
                        (lambda: (os.chown(run, 0, 65534), run.chmod(0o775)), "group 65534 can write it")):
        run.mkdir()
        change()
        for write in (lambda: statusfile.publish(doc(), "ok x", str(run)),
                      lambda: statusfile.publish_health("stopped x", str(run))):
            try:
                write()
            except OSError as exc:  # what the daemon's status-file-failed path catches
                assert isinstance(exc, statusfile.UnsafeDirectory), exc
                message = str(exc)
            else:
                raise AssertionError(f"wrote into {run} ({why})")
            assert why in message and "\n" not in message, message
            assert _files(run) == []
        run.rmdir()


def test_a_root_owned_private_directory_is_used(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    statusfile.publish(doc(), "ok x", str(run))
    assert _files(run) == ["health", "status.json"]


def test_a_symlink_planted_for_the_directory_or_its_files_is_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").symlink_to(elsewhere)
    try:
        statusfile.publish(doc(), "ok x", str(tmp_path / "run"))
    except statusfile.UnsafeDirectory as exc:
        assert "symbolic link" in str(exc)
    else:
        raise AssertionError("wrote through a symlinked directory")
    assert _files(elsewhere) == []
    assert statusfile.read_previous(str(tmp_path / "run")) is None

    run = tmp_path / "real"
    run.mkdir()
    precious = tmp_path / "precious"
    precious.write_text(json.dumps(doc()))
    for name in ("status.json", "health"):
        (run / name).symlink_to(precious)
    assert statusfile.read_previous(str(run)) is None, "a link is not read as the daemon's file"
    statusfile.publish(doc(state="blocked"), "blocked x", str(run))
    assert json.loads(precious.read_text())["state"] == "ok", "the link's target is untouched"
    assert not (run / "status.json").is_symlink() and statusfile.read_previous(str(run))["state"] == "blocked"


def test_a_fifo_in_place_of_status_json_is_not_waited_on(tmp_path, no_hang):
    os.mkfifo(tmp_path / "status.json")
    assert statusfile.read_previous(str(tmp_path)) is None
