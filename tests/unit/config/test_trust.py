"""Who may change what calfwd trusts: the on_calico_flush program, checked on real files
(os.chown and chmod make the bad cases; the tests run as root)."""

from __future__ import annotations

import os

import pytest

from calfwd.config.trust import program_problems

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


def program(directory, name: str = "on-flush", mode: int = 0o755):
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def refused(path, why: str) -> str:
    problems = program_problems(str(path))
    assert len(problems) == 1 and why in problems[0], problems
    return problems[0]


def test_a_root_owned_program_in_root_only_directories_passes(root_dir):
    assert program_problems(str(program(root_dir))) == []
    assert program_problems("/bin/sh") == []  # /bin and /bin/sh are symbolic links on most systems
    (root_dir / "sh").symlink_to("/bin/sh")
    assert program_problems(str(root_dir / "sh")) == []


@pytest.mark.parametrize("mode,owner,why", [
    (0o644, 0, "not executable (mode 0644)"),
    (0o775, 0, "mode 0775 lets group or others write it"),
    (0o757, 0, "mode 0757 lets group or others write it"),
    (0o755, NOBODY, f"owned by uid {NOBODY}, must be owned by root"),
])
def test_the_program_itself(root_dir, mode, owner, why):
    path = program(root_dir, mode=mode)
    os.chown(path, owner, 0)
    refused(path, why)


def test_not_a_file_not_there_not_absolute(root_dir):
    refused(root_dir, "not a regular file")
    refused(root_dir / "missing", "No such file")
    refused("bin/sh", "not an absolute path")
    program(root_dir)
    refused(root_dir / "on-flush" / "x", "is not a directory")
    (root_dir / "a").symlink_to(root_dir / "b")
    (root_dir / "b").symlink_to(root_dir / "a")
    refused(root_dir / "a", "more than 40 symbolic links")


@pytest.mark.parametrize("mode,owner", [(0o1777, 0), (0o777, 0), (0o775, 0), (0o755, NOBODY)])
def test_a_directory_someone_else_can_write_even_sticky(root_dir, mode, owner):
    shared = root_dir / "shared"
    shared.mkdir()
    os.chown(shared, owner, 0)
    shared.chmod(mode)
    why = f"its directory {shared} can be written by someone other than root (owner uid {owner}, mode {mode:04o})"
    refused(program(shared), why)
    sub = shared / "sub"  # higher up counts too
    sub.mkdir(mode=0o755)
    refused(program(sub), why)


def test_the_sticky_tmp_is_refused_for_programs(tmp_path):
    """pytest's tmp_path is under /tmp: fine for a config file, not for a program."""
    refused(program(tmp_path), "its directory /tmp can be written by someone other than root")


def test_a_link_another_user_could_repoint(root_dir):
    """Every directory a name is looked up in counts, not only those above the real file."""
    real = program(root_dir)
    theirs = root_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, 0)
    (theirs / "link").symlink_to(real)
    refused(theirs / "link", f"its directory {theirs} can be written")
    # A root-owned link to their link: the real file and its directories are root's, but the
    # user can point their link at anything.
    (root_dir / "hop").symlink_to(theirs / "link")
    problem = refused(root_dir / "hop", f"its directory {theirs} can be written")
    assert problem.startswith(f"{root_dir / 'hop'} (= {real}): ")
    # Likewise a directory link through their directory.
    (theirs / "dir").symlink_to(root_dir)
    (root_dir / "via").symlink_to(theirs / "dir")
    refused(root_dir / "via" / "on-flush", f"its directory {theirs} can be written")
