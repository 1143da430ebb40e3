"""The image recipes in docs/recipes, run as they are written (issue 22): their config file, their
`calfwd` lines and their `systemctl` lines against a root tree, with no system bus (an image
build has none); then a real firewalld starts on the tree's firewalld directory (the lab's
--system-config) and must have calfwd's zone and policies at once, routing the peer into the
pod, with nothing left for calfwd to change in firewalld."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

from lab.calfwd import Calfwd

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "docs" / "recipes"
UNIT = REPO / "systemd" / "calfwd.service"


def kickstart() -> Tuple[str, List[List[str]]]:
    """The %post section's config (its heredoc) and its command lines."""
    lines = (RECIPES / "kickstart-post.ks").read_text().splitlines()
    post = lines[lines.index("%post --erroronfail") + 1:]
    post = post[:post.index("%end")]
    start = next(i for i, l in enumerate(post) if "<<'CALFWD'" in l)
    end = post.index("CALFWD", start + 1)
    config = "\n".join(post[start + 1:end]) + "\n"
    commands = [shlex.split(l) for l in post[end + 1:] if l.split()[:1] in (["calfwd"], ["systemctl"])]
    return config, commands


def containerfile() -> Tuple[str, List[List[str]]]:
    """The config shown in its comment and its RUN lines for calfwd and systemctl."""
    lines = (RECIPES / "Containerfile.bootc").read_text().splitlines()
    start = lines.index("#   calfwd.toml:")
    config = "".join(l[len("#     "):] + "\n" for l in lines[start + 1:] if l.startswith("#     "))
    commands = [shlex.split(l)[1:] for l in lines if l.startswith("RUN ")]
    return config, [c for c in commands if c[:1] in (["calfwd"], ["systemctl"])]


@pytest.mark.parametrize("recipe", [kickstart, containerfile], ids=["kickstart", "bootc"])
def test_a_recipe_prepares_a_root_tree_whose_firewalld_starts_with_calfwds_objects(lab, tmp_path, recipe):
    config, commands = recipe()
    assert config == '[calico]\nip_pools = "auto"\n', config
    assert [c for c in commands if c[0] == "calfwd"] == [["calfwd", "check"], ["calfwd", "apply", "--offline"]]
    assert [c for c in commands if c[0] == "systemctl"] == [["systemctl", "enable", "calfwd.service"]]
    root = tmp_path / "root"
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "usr/lib/systemd/system/calfwd.service")
    calfwd = Calfwd(lab, config)  # its file stands for the tree's /etc/calfwd/calfwd.toml
    bus = calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"]
    calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={lab.workdir}/no-bus"  # an image build has none
    for argv in commands:
        if argv[0] == "calfwd":
            extra = ["--firewalld-dir", str(lab.firewalld.config_dir)] if "--offline" in argv else []
            done = calfwd.cli(*argv[1:], *extra)
        else:  # systemctl on the tree, as an image build's chroot runs it: files only, no manager
            done = subprocess.run(["systemctl", f"--root={root}", *argv[1:]], capture_output=True, text=True,
                                  timeout=60)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    assert (root / "etc/systemd/system/multi-user.target.wants/calfwd.service").is_symlink()

    lab.firewalld.start()
    assert "calfwd" in lab.firewalld.firewall_cmd("--get-zones").split()
    assert {"calfwd-forward", "calfwd-host"} <= set(lab.firewalld.firewall_cmd("--get-policies").split())
    assert lab.peer_reaches_pod(within=3), "routed into the pod by the files alone"
    calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus  # the booted node's
    plan = calfwd.cli("plan")
    assert "firewalld: in sync" in plan.stdout, plan.stdout
