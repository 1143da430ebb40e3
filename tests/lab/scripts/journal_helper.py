"""The journald half of test_unit_and_journal.py, as a program of its own.

Runs as root inside `unshare --mount --propagation private`: everything it mounts
vanishes with that namespace. argv: workdir, catalog database dir, netns name, config.
"""
import json, os, signal, subprocess, sys, time
work, catalog_db, netns, config = sys.argv[1:5]
env = dict(os.environ)
netns_fd = os.open("/run/netns/" + netns, os.O_RDONLY)  # before /run is hidden

def mount(*args):
    subprocess.run(["mount", "-n", *args], check=True)

mount("-t", "tmpfs", "calfwd-test", "/run")
for d in ("/run/systemd/journal", "/run/log/journal", "/run/systemd/journald.conf.d"):
    os.makedirs(d)
with open("/run/systemd/journald.conf.d/calfwd-test.conf", "w") as f:
    f.write("[Journal]\nStorage=volatile\nForwardToSyslog=no\nForwardToKMsg=no\n"
            "ForwardToConsole=no\nForwardToWall=no\nReadKMsg=no\n")
if os.path.isdir("/var/log/journal"):  # never the host's persistent journal
    mount("-t", "tmpfs", "calfwd-test", "/var/log/journal")
mount("--bind", catalog_db, "/var/lib/systemd/catalog")

journald = subprocess.Popen(["/lib/systemd/systemd-journald"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(work + "/journald.log", "w"))
deadline = time.monotonic() + 15
while not os.path.exists("/run/systemd/journal/socket"):
    assert time.monotonic() < deadline and journald.poll() is None, "journald did not start"
    time.sleep(0.05)
machine = open("/etc/machine-id").read().strip()
directory = "/run/log/journal/" + machine

def journal(*args):
    return subprocess.run(["journalctl", "--directory=" + directory, "--no-pager", *args],
                          capture_output=True, text=True).stdout

def wait_for(*matches, count=1):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(journal(*matches, "-o", "json").splitlines()) >= count:
            return
        time.sleep(0.1)
    raise SystemExit("no %s entry in the journal" % " ".join(matches))

try:
    # 1. A small program using the Reporter, as any calfwd command does.
    emitter = subprocess.run([sys.executable, "-c", sys.argv[5]], capture_output=True, text=True)
    assert emitter.returncode == 0, emitter.stderr
    wait_for("CALFWD_TEST=reporter")
    # 2. The real daemon, in the test's network namespace, in this mount namespace.
    daemon = subprocess.Popen(["nsenter", "--net=/proc/self/fd/%d" % netns_fd, sys.executable,
                               "-m", "calfwd", "--config", config, "run"], pass_fds=[netns_fd],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(work + "/daemon.stderr", "w"))
    pid = "_PID=%d" % daemon.pid  # nsenter execs the daemon: same pid
    wait_for("CALFWD_EVENT=reconciled", pid)
    daemon.send_signal(signal.SIGHUP)
    wait_for("CALFWD_EVENT=config-reloaded", pid)
    wait_for("CALFWD_EVENT=reconciled", pid, count=2)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=20)
    wait_for("CALFWD_EVENT=stopping", pid)
    with open(work + "/daemon.rc", "w") as f:
        f.write(str(daemon.returncode))
    with open(work + "/entries.json", "w") as f:
        f.write(journal("SYSLOG_IDENTIFIER=calfwd", "-o", "json"))
    with open(work + "/explained.txt", "w") as f:
        f.write(journal("CALFWD_EVENT=reconciled", "CALFWD_TEST=reporter", "-x"))
finally:
    journald.terminate()
    journald.wait(timeout=10)
