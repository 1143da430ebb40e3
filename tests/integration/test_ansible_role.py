"""The Ansible role (ansible/roles/calfwd, issue 22) run for real, against calfwd under a real
systemd (tests/lab/systemd_root.py): firewalld, D-Bus and calfwd are real units in there.

The controller is ansible-playbook from the venv tests/install-deps.sh makes (/opt/calfwd-ansible,
ansible-core and ansible-lint pinned from PyPI; CALFWD_ANSIBLE_VENV overrides it). It reaches
the container through a connection plugin of the tests (tests/lab/ansible/connection_plugins/
calfwd_nsenter.py): nsenter into the container's namespaces, named by its PID 1 and checked by
their inode numbers. The container's root is Debian (no dnf, no RPM repository): calfwd is the
RPM `make rpm` builds from this checkout, installed with rpm as test_real_systemd.py does, and
the role runs with calfwd_install_package=false. The package task itself is therefore not run
here; everything after it is, as on a RHEL node.
Ansible's temporary files go to a directory of uid 1000 (ansible_remote_tmp), as they do when
Ansible logs in as a user and becomes root: calfwd refuses a config in a directory anyone but
root can write to, so the role's check must judge a copy of its own.

The runs, in order, share one container (the tests run in file order):
  first run: changes things; calfwd active and enabled, calfwd's zone and policies in
  firewalld, the file as rendered, the reports on the controller -> second run: changed=0
  -> invalid variables: the play fails with calfwd's own lines, the file byte-identical, calfwd
  and firewalld untouched -> firewalld was never restarted -> the guard's drop-in removed:
  apply puts it back, the apply task alone reports changed -> calfwd_restart_firewalld: true
  restarts firewalld once, with the flush guard in place (Debian's firewalld 1.3.3 flushes, so
  the package's %post installed the guard, and the running firewalld started without it) ->
  the same again: changed=0, no restart. Then ansible-lint (production profile, --strict) on
  the role and the example playbook in docs/ansible.

Cost: about 40 s with the root cached (the RPM build, one boot, six plays of a few seconds).

Skipped with the reason where the lab cannot run (not root, a tool or the Debian mirror
missing), failed instead with CI=true, like test_real_systemd.py. A missing Ansible venv is a
failure everywhere: `make test` installs it (tests/install-deps.sh).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from lab.netns import SYSTEM_PATH
from lab.package import booted_with, build_rpm, skip_or_fail
from lab.systemd_root import POWERED_OFF, SystemdContainer, prerequisites

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "ansible" / "roles"
PLUGINS = REPO / "tests" / "lab" / "ansible" / "connection_plugins"
VENV = Path(os.environ.get("CALFWD_ANSIBLE_VENV", "/opt/calfwd-ansible"))
CONFIG = "/etc/calfwd/calfwd.toml"
HOST = "node1"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
REMOTE_TMP = "/home/deploy/.ansible/tmp"
GUARD = "/etc/systemd/system/firewalld.service.d/calfwd-flush-guard.conf"


def _venv_tool(name: str) -> str:
    tool = VENV / "bin" / name
    if not os.access(tool, os.X_OK):
        pytest.fail("%s not found: the Ansible venv is missing (tests/install-deps.sh, run by `make test` "
                    "and `make deps`, installs it)" % tool, pytrace=False)
    return str(tool)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    reason = prerequisites()
    if reason:
        skip_or_fail(reason)
    _venv_tool("ansible-playbook")
    return build_rpm(tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture(scope="module")
def box(tmp_path_factory, package):
    with booted_with(tmp_path_factory.mktemp("systemd"), package, hostname="calfwd-ansible-test") as container:
        # Ansible's temporary files in a directory of a user other than root, as when Ansible
        # logs in as a user and becomes root (ansible_remote_tmp in the inventory).
        container.run("install", "-d", "-o", "1000", "-g", "1000", "-m", "0700", "/home/deploy",
                      "/home/deploy/.ansible", REMOTE_TMP)
        yield container


class Controller:
    """ansible-playbook with the role, an inventory naming the container, and a report dir."""

    def __init__(self, box: SystemdContainer, work: Path) -> None:
        self.box = box
        self.work = work
        self.reports = work / "reports"
        namespaces = ",".join("%s=%d" % kv for kv in box.ns_ids.items())
        (work / "inventory.ini").write_text(
            "[nodes]\n%s calfwd_nsenter_pid=%d calfwd_nsenter_namespaces=%s\n\n[nodes:vars]\n"
            "ansible_connection=calfwd_nsenter\nansible_python_interpreter=/usr/bin/python3\n"
            "ansible_remote_tmp=%s\n" % (HOST, box.pid, namespaces, REMOTE_TMP))
        (work / "site.yml").write_text(
            "- name: calfwd on the test node\n  hosts: nodes\n  gather_facts: false\n"
            "  roles:\n    - role: calfwd\n      vars:\n        calfwd_install_package: false\n"
            "        calfwd_report_dir: %s\n" % json.dumps(str(self.reports)))
        (work / "ansible.cfg").write_text("[defaults]\n")  # nothing from the host's or the cwd's
        home = work / "ansible-home"
        self.env = {
            "PATH": "%s:%s" % (VENV / "bin", SYSTEM_PATH), "LANG": "C.UTF-8", "HOME": str(work),
            "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_ROLES_PATH": str(ROLES),
            "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS), "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "0",
        }
        self.runs = 0

    def play(self, **extra: object) -> "Run":
        self.runs += 1
        argv = [_venv_tool("ansible-playbook"), "-i", str(self.work / "inventory.ini"), str(self.work / "site.yml")]
        if extra:
            argv += ["-e", json.dumps(extra)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=self.env, cwd=str(self.work))
        (self.work / ("run-%d.log" % self.runs)).write_text(proc.stdout + proc.stderr)
        return Run(proc.returncode, proc.stdout, proc.stderr)


class Run:
    def __init__(self, rc: int, stdout: str, stderr: str) -> None:
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        found = {m.group(1): dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:])))
                 for m in RECAP.finditer(stdout)}
        assert HOST in found, "no PLAY RECAP for %s:\n%s" % (HOST, self)
        self.recap: Dict[str, int] = found[HOST]

    def __str__(self) -> str:
        return "exit %d\n%s\n%s" % (self.rc, self.stdout[-6000:], self.stderr[-3000:])


@pytest.fixture(scope="module")
def ctl(box, tmp_path_factory) -> Controller:
    return Controller(box, tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def firewalld_before(box) -> Dict[str, str]:
    """firewalld as it ran before the role's first run."""
    return box.show("firewalld", "MainPID", "ActiveEnterTimestampMonotonic")


def _active(box: SystemdContainer, unit: str) -> str:
    return box.run("systemctl", "is-active", unit, check=False).stdout.strip()


def _firewalld(box: SystemdContainer) -> Dict[str, str]:
    return box.show("firewalld", "MainPID", "ActiveEnterTimestampMonotonic")


# -- the runs, in order -------------------------------------------------------------------

def test_first_run_installs_and_applies(box, ctl, firewalld_before):
    assert _active(box, "calfwd") == "inactive" and _active(box, "firewalld") == "active"
    shipped = box.run("cat", CONFIG).stdout
    run = ctl.play()
    assert run.rc == 0 and run.recap["failed"] == 0, run
    assert run.recap["changed"] >= 3, run  # the file, the unit enabled and started, its reload
    # The node: the minimal config, root's, as the daemon reads it; calfwd enabled and running.
    text = box.run("cat", CONFIG).stdout
    assert text != shipped
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["[calico]", 'ip_pools = ["10.244.0.0/16"]', "nat_outgoing = true"], text
    assert box.run("stat", "-c", "%a %U:%G", CONFIG).stdout.split() == ["644", "root:root"]
    assert _active(box, "calfwd") == "active", box.diagnose()
    assert box.run("systemctl", "is-enabled", "calfwd").stdout.strip() == "enabled"
    # firewalld has calfwd's zone and policies, at runtime and permanently.
    zone = box.run("firewall-cmd", "--zone=calfwd", "--list-all").stdout
    assert "target: ACCEPT" in zone and "cali+" in zone, zone
    assert re.search(r"egress-zones: calfwd\b", box.run("firewall-cmd", "--info-policy=calfwd-forward").stdout)
    assert "calfwd-host" in box.run("firewall-cmd", "--permanent", "--get-policies").stdout.split()
    assert "10.244.0.0/16" in box.run("nft", "list", "table", "inet", "calfwd").stdout
    assert box.run("calfwd", "status", check=False).returncode == 0
    # The reports, per node on the controller.
    status = (ctl.reports / HOST / "status.txt").read_text()
    assert re.search(r"^nftables: in sync$", status, re.M) and re.search(r"^firewalld: in sync$", status, re.M), status
    audit = json.loads((ctl.reports / HOST / "audit.json").read_text())
    assert audit["ok"] is True and audit["config_path"] == CONFIG, audit
    assert "10.244.0.0/16" in json.dumps(audit)


def test_second_run_changes_nothing(box, ctl):
    pid = box.show("calfwd", "MainPID")["MainPID"]
    before = box.run("sha256sum", CONFIG).stdout
    run = ctl.play()
    assert run.rc == 0 and run.recap["changed"] == 0 and run.recap["failed"] == 0, run
    assert run.recap["ok"] >= 5, run
    assert box.run("sha256sum", CONFIG).stdout == before
    assert box.show("calfwd", "MainPID")["MainPID"] == pid
    json.loads((ctl.reports / HOST / "audit.json").read_text())


def test_invalid_variables_fail_with_calfwds_message_and_change_nothing(box, ctl):
    before = box.run("cat", CONFIG).stdout
    calfwd = box.show("calfwd", "MainPID", "ActiveEnterTimestampMonotonic", "ExecMainStartTimestampMonotonic")
    firewalld = _firewalld(box)
    mark = box.cursor()
    run = ctl.play(calfwd_settings={"calico": {"colour": "blue"}, "firewalld": {"mode": "sometimes"}})
    assert run.rc != 0 and run.recap["failed"] == 1, run
    # The template task failed on `calfwd check`'s exit 2, with its lines, one per problem.
    assert "failed to validate" in run.stdout, run
    assert re.search(r"calfwd: \S+: calico\.colour: unknown key", run.stdout), run
    assert re.search(r"calfwd: \S+: firewalld\.mode: [^\\\n]*sometimes", run.stdout), run
    assert '"exit_status": 2' in run.stdout, run
    # Judged as a config, not refused for where Ansible put it (a directory of uid 1000's);
    # the private copy calfwd judged is gone.
    assert "someone other than root" not in run.stdout, run
    assert box.run("sh", "-c", "ls -d /run/calfwd-check.* 2>/dev/null", check=False).stdout == ""
    # Nothing on the node changed: the file, calfwd's process, firewalld's.
    assert box.run("cat", CONFIG).stdout == before
    assert box.show("calfwd", "MainPID", "ActiveEnterTimestampMonotonic", "ExecMainStartTimestampMonotonic") == calfwd
    assert _firewalld(box) == firewalld
    assert not [e for e in box.journal_after(mark, "calfwd.service") if "Reload" in str(e.get("MESSAGE"))]


def test_firewalld_was_never_restarted(box, firewalld_before):
    assert _firewalld(box) == firewalld_before
    assert _active(box, "firewalld") == "active"


def test_apply_reports_what_it_changed(box, ctl, firewalld_before):
    """The flush guard's drop-in gone (the daemon only warns about it): `calfwd apply` writes it
    back, and the apply task alone reports changed."""
    box.run("rm", GUARD)
    box.run("systemctl", "daemon-reload")
    run = ctl.play()
    assert run.rc == 0 and run.recap["changed"] == 1, run
    assert re.search(r"^TASK \[calfwd : Apply calfwd's configuration\] \**\nchanged: \[%s\]$" % HOST,
                     run.stdout, re.M), run
    box.run("test", "-f", GUARD)
    # The layers' lines the apply task's changed_when reads ("<layer>: changed:" / "in sync"),
    # with the daemon stopped so that it cannot repair first.
    box.run("systemctl", "stop", "calfwd")
    try:
        box.run("nft", "delete", "table", "inet", "calfwd")
        out = box.run("calfwd", "apply").stdout
        assert re.search(r"^nftables: changed:$", out, re.M) and re.search(r"^firewalld: in sync$", out, re.M), out
        again = box.run("calfwd", "apply").stdout
        assert "changed:" not in again and "flush guard:" not in again, again
    finally:
        box.run("systemctl", "start", "calfwd")
    assert _firewalld(box) == firewalld_before


def test_restart_firewalld_restarts_it_once_with_the_guard_in_place(box, ctl, firewalld_before):
    guard = box.run("calfwd", "guard", "status", check=False)
    assert box.run("test", "-f", GUARD, check=False).returncode == 0, \
        "the package's %%post did not install the flush guard on firewalld 1.3.3: %s" % guard.stdout
    assert "started without it" in guard.stdout, guard
    mark = box.cursor()
    run = ctl.play(calfwd_restart_firewalld=True)
    assert run.rc == 0 and run.recap["failed"] == 0, run
    assert run.recap["changed"] == 2, run  # the guard's verdict and the handler's restart
    assert "RUNNING HANDLER [calfwd : Restart firewalld]" in run.stdout, run
    starts = [e for e in box.journal_after(mark) if e.get("UNIT") == "firewalld.service"
              and e.get("JOB_TYPE") == "start" and e.get("JOB_RESULT") == "done"]
    assert len(starts) == 1, starts
    after = _firewalld(box)
    assert after["MainPID"] != firewalld_before["MainPID"], after
    assert _active(box, "firewalld") == "active" and _active(box, "calfwd") == "active"
    guard = box.run("calfwd", "guard", "status", check=False)
    assert guard.returncode == 0 and "cannot run" in guard.stdout, guard
    assert "calfwd" in box.run("firewall-cmd", "--get-active-zones").stdout or \
        "calfwd" in box.run("firewall-cmd", "--get-zones").stdout

    again = ctl.play(calfwd_restart_firewalld=True)
    assert again.rc == 0 and again.recap["changed"] == 0, again
    assert "RUNNING HANDLER" not in again.stdout, again
    assert _firewalld(box) == after


def test_poweroff_leaves_nothing_behind(box):
    assert box.poweroff() == POWERED_OFF, box.log_text()
    assert box.leftovers() == []


def test_ansible_lint_production_profile_is_clean(tmp_path):
    lint = _venv_tool("ansible-lint")
    env = {"PATH": "%s:%s" % (VENV / "bin", SYSTEM_PATH), "LANG": "C.UTF-8", "HOME": str(tmp_path),
           "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_ROLES_PATH": str(ROLES),
           "NO_COLOR": "1"}  # --offline: no version check, no collection installs
    proc = subprocess.run([lint, "--offline", "--profile", "production", "--strict",
                           "ansible/roles/calfwd", "docs/ansible/site.yml"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"Passed: 0 failure\(s\), 0 warning\(s\)", out), out
    assert "Profile 'production' was required, and it passed" in out, out
