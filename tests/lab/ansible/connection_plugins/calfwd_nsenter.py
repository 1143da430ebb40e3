"""An Ansible connection into a calfwd test container (tests/lab/systemd_root.py), for the
Ansible role's test only (tests/integration/test_ansible_role.py).

ansible-core has no connection into a set of Linux namespaces: this one runs every command with
nsenter in the container's mount, network, pid, uts, ipc and cgroup namespaces, as
SystemdContainer.run does, and moves files through `cat` in there. The container's PID 1 is
named by its host pid, and the namespaces' inode numbers are checked on descriptors opened
before each command: a pid reused by a host process cannot make a command run on the host.
"""

from __future__ import annotations

DOCUMENTATION = """
    name: calfwd_nsenter
    short_description: run in the namespaces of a calfwd test container (tests only)
    description:
        - Runs commands with nsenter in the mount, network, pid, uts, ipc and cgroup namespaces of
          a container booted by calfwd's tests, as root, with a clean environment.
    author: calfwd
    options:
        pid:
            description: The host's pid of the container's PID 1 (systemd).
            type: int
            required: true
            vars:
                - name: calfwd_nsenter_pid
        namespaces:
            description: The namespaces' inode numbers the container had at boot, as
                "mnt=N,net=N,pid=N,uts=N,ipc=N,cgroup=N"; a mismatch fails the command.
            type: str
            required: true
            vars:
                - name: calfwd_nsenter_namespaces
    extends_documentation_fragment:
        - connection_pipelining
"""

import os
import subprocess
from typing import Any, Dict, List, Optional, Tuple

from ansible.errors import AnsibleConnectionFailure, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.connection import ConnectionBase

NSENTER_OPTION = {"mnt": "--mount", "net": "--net", "pid": "--pid", "uts": "--uts",
                  "ipc": "--ipc", "cgroup": "--cgroup"}
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
INSIDE_ENV = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
              "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0"}


class Connection(ConnectionBase):
    """Commands and files into the container's namespaces through nsenter."""

    transport = "calfwd_nsenter"
    has_pipelining = True
    default_user = "root"

    def _connect(self) -> "Connection":
        self._connected = True
        return self

    def _open_namespaces(self) -> Dict[str, int]:
        pid = int(self.get_option("pid"))
        expected = dict(item.split("=", 1) for item in str(self.get_option("namespaces")).split(","))
        fds: Dict[str, int] = {}
        try:
            for ns in NSENTER_OPTION:
                fds[ns] = os.open("/proc/%d/ns/%s" % (pid, ns), os.O_RDONLY | os.O_CLOEXEC)
                if str(os.fstat(fds[ns]).st_ino) != expected.get(ns):
                    raise AnsibleConnectionFailure("pid %d is not the container any more (%s namespace "
                                                   "%s, expected %s)" % (pid, ns, os.fstat(fds[ns]).st_ino,
                                                                         expected.get(ns)))
        except OSError as exc:
            self._close(fds)
            raise AnsibleConnectionFailure("cannot open the container's namespaces (pid %d): %s" % (pid, exc))
        except AnsibleConnectionFailure:
            self._close(fds)
            raise
        return fds

    @staticmethod
    def _close(fds: Dict[str, int]) -> None:
        for fd in fds.values():
            os.close(fd)

    def _inside(self, argv: List[str], stdin: Any = None, stdout: Any = subprocess.PIPE,
                data: Optional[bytes] = None) -> Tuple[int, bytes, bytes]:
        fds = self._open_namespaces()
        try:
            nsenter = ["nsenter", *("%s=/proc/self/fd/%d" % (NSENTER_OPTION[ns], fd) for ns, fd in fds.items()),
                       "--", "/usr/bin/env", "-i", *("%s=%s" % kv for kv in INSIDE_ENV.items()), *argv]
            proc = subprocess.run(nsenter, input=data, stdin=None if data is not None else (stdin or subprocess.DEVNULL),
                                  stdout=stdout, stderr=subprocess.PIPE, pass_fds=list(fds.values()),
                                  env={"PATH": HOST_PATH})
        finally:
            self._close(fds)
        return proc.returncode, proc.stdout or b"", proc.stderr or b""

    def exec_command(self, cmd: str, in_data: Optional[bytes] = None, sudoable: bool = True) -> Tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._display.vvv("EXEC in the container: %s" % cmd, host=self._play_context.remote_addr)
        return self._inside(["/bin/sh", "-c", cmd], data=in_data)

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as source:
            rc, _out, err = self._inside(["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], stdin=source)
        if rc != 0:
            raise AnsibleConnectionFailure("put_file %s to %s in the container: exit %d: %s"
                                           % (in_path, out_path, rc, err.decode(errors="replace")))

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as target:
            rc, _out, err = self._inside(["cat", "--", in_path], stdout=target)
        if rc != 0:
            raise AnsibleConnectionFailure("fetch_file %s from the container: exit %d: %s"
                                           % (in_path, rc, err.decode(errors="replace")))

    def close(self) -> None:
        self._connected = False
