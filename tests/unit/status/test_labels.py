"""status/labels.py: the node labels file for node-feature-discovery. The writer against a real
directory (tmp_path): only calfwd's own file is ever replaced or removed."""

from __future__ import annotations

import io
import os

from calfwd import config as cfg
from calfwd.events import Reporter
from calfwd.status import labels


def test_stable_facts_as_valid_label_values_and_unknown_ones_left_out():
    found = labels.facts("0.9.0", "canal", "1.3.3", "nftables", "not-in-effect")
    assert found == {"calfwd-version": "0.9.0", "calfwd-cni": "canal", "calfwd-firewalld-version": "1.3.3",
                     "calfwd-firewalld-backend": "nftables", "calfwd-flush-guard": "not-in-effect"}
    assert "calfwd-firewalld-version" not in labels.facts("0.9.0", "calico", "", "", "")
    assert labels.label_value("1.0.0+git abc/def") == "1.0.0-git-abc-def"
    assert len(labels.label_value("x" * 100)) == 63 and labels.label_value("--") == ""
    text = labels.render(found)
    assert text.startswith(labels.HEADER) and text.splitlines()[1] == "calfwd-cni=canal"


def writer(tmp_path, path):
    out = io.StringIO()
    writes = []

    def write(p, text):
        writes.append(p)
        from calfwd.drivers.textfile import write_atomic
        write_atomic(p, text)
    return labels.LabelsFile(Reporter(out, journal=None), lambda: str(path), write), out, writes


def test_rewritten_only_when_a_fact_changes(tmp_path):
    path = tmp_path / "calfwd"
    w, _out, writes = writer(tmp_path, path)
    w.update(labels.facts("1", "canal", "1.3.3", "nftables", "ok"))
    w.update(labels.facts("1", "canal", "1.3.3", "nftables", "ok"))
    assert len(writes) == 1 and "calfwd-cni=canal" in path.read_text()
    w.update(labels.facts("1", "flannel", "1.3.3", "nftables", "ok"))
    assert len(writes) == 2 and "calfwd-cni=flannel" in path.read_text()


def test_a_link_or_a_file_calfwd_did_not_write_is_refused_and_said_once(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    path = tmp_path / "calfwd"
    path.symlink_to(target)
    w, out, writes = writer(tmp_path, path)
    w.update(labels.facts("1", "canal", "", "", ""))
    w.update(labels.facts("1", "canal", "", "", ""))
    assert writes == [] and target.read_text() == "precious\n" and path.is_symlink()
    said = [l for l in out.getvalue().splitlines() if "labels-write-failed" in l]
    assert len(said) == 1 and "a symbolic link is there" in said[0], out.getvalue()
    path.unlink()
    path.write_text("feature=mine\n")
    w.update(labels.facts("1", "canal", "", "", ""))
    assert path.read_text() == "feature=mine\n" and "a file calfwd did not write" in out.getvalue()
    assert labels.remove_written(str(path))[1].startswith(f"labels: {path} left alone")
    path.unlink()
    w.update(labels.facts("1", "canal", "", "", ""))
    assert path.read_text().startswith(labels.HEADER)
    assert labels.remove_written(str(path)) == (f"node labels file {path}", "") and not path.exists()


def test_the_config_key_is_off_by_default_and_checked(tmp_path):
    base = '[calico]\nip_pools = ["10.244.0.0/16"]\n'
    assert cfg.parse(base, "t.toml").labels_features_file == ""
    good = cfg.parse(base + f'[labels]\nfeatures_file = "{tmp_path}/calfwd"\n', "t.toml")
    assert good.labels_features_file == f"{tmp_path}/calfwd"
    for value, why in (("relative", "must be an absolute path"), (f"{tmp_path}/.hidden", "NFD skips hidden"),
                       (f"{tmp_path}/none/calfwd", "does not exist")):
        try:
            cfg.parse(base + f'[labels]\nfeatures_file = "{value}"\n', "t.toml")
        except cfg.ConfigError as exc:
            assert any(f"labels.features_file: " in p and why in p for p in exc.problems), exc.problems
        else:
            raise AssertionError(value)
    assert os.path.isdir(tmp_path)
