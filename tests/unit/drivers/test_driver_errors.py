"""drivers/errors.py and drivers/budget.py: what a driver's failure means, with no binding
imported (the bus errors are given by name, as dbus-python reports them)."""

from __future__ import annotations

import pytest

from calfwd import cli
from calfwd.drivers import budget as budgets
from calfwd.drivers import errors


def test_firewalds_own_not_authorized_counts_as_denied():
    err = errors.FirewalldError("x", "org.fedoraproject.FirewallD1.NotAuthorizedException",
                                "NOT_AUTHORIZED: polkit said no")
    assert err.kind == errors.DENIED and err.code == "NOT_AUTHORIZED"
    polkit = errors.FirewalldError("x", "org.fedoraproject.FirewallD1.NotAuthorizedException", "Not Authorized(uid)")
    assert polkit.kind == errors.DENIED


def test_an_owner_that_exits_during_the_call_is_gone_not_hung():
    err = errors.FirewalldError("x", "org.freedesktop.DBus.Error.NoReply",
                                "Message recipient disconnected from message bus without replying")
    assert err.kind == errors.ABSENT


def test_firewalds_own_error_is_its_answer_not_a_bus_failure():
    err = errors.FirewalldError("create zone 'calfwd'", "org.fedoraproject.FirewallD1.Exception",
                                "NAME_CONFLICT: new_zone(): 'calfwd'")
    assert (err.code, err.kind) == ("NAME_CONFLICT", "")
    assert errors.explained(err) is err  # nothing to put in front of firewalld's own words
    assert str(err) == "create zone 'calfwd': NAME_CONFLICT: new_zone(): 'calfwd'"


def test_no_bus_at_all_answers_every_question_with_that():
    client = errors.Unreachable("org.freedesktop.DBus.Error.NoServer", "Failed to connect to socket")
    for ask in (client.state, client.facts, client.read_paths, client.check_permanent_config):
        with pytest.raises(errors.FirewalldError) as caught:
            ask()
        assert caught.value.kind == errors.NO_BUS and "Failed to connect" in str(caught.value)
        assert str(caught.value).startswith("cannot reach the system bus: ")
    assert client.reachability() == (errors.UNREACHABLE, str(client.error))
    denied = errors.Unreachable("org.freedesktop.DBus.Error.AccessDenied", "no")
    assert denied.error.kind == errors.DENIED


def test_one_vocabulary_maps_a_failed_call_onto_firewalld_as_a_whole():
    """Only a name nobody owns is STOPPED, the one state in which calfwd edits firewalld's files."""
    assert {kind: errors.reachability(kind) for kind in (errors.ABSENT, errors.SILENT, errors.DENIED,
                                                          errors.NO_BUS, "")} == {
        errors.ABSENT: errors.STOPPED, errors.SILENT: errors.NOT_ANSWERING, errors.DENIED: errors.UNREACHABLE,
        errors.NO_BUS: errors.UNREACHABLE, "": errors.UNREACHABLE}
    assert set(errors.KINDS.values()) <= set(errors.REACHABILITY)


def test_the_cli_names_the_layer_by_class_not_by_name(tmp_path, monkeypatch, capsys):
    """One line, naming the layer, for a driver's error and anything derived from it."""
    class Refused(errors.NftError):
        pass

    def refuse(_args):
        raise Refused("netlink: Operation not permitted")

    monkeypatch.setitem(cli.COMMANDS, "check", refuse)
    assert cli.main(["--config", str(tmp_path / "c.toml"), "check"]) == cli.EXIT_SYSTEM
    assert capsys.readouterr().err == "calfwd: nftables: netlink: Operation not permitted\n"
    assert errors.layer(errors.FirewalldError("reload firewalld", message="x")) == "firewalld"
    assert errors.layer(ValueError("x")) == "ValueError"


def test_a_budget_is_shared_and_never_extended_by_an_inner_one():
    now = [0.0]
    assert budgets.current() is None
    with budgets.budget(5.0, clock=lambda: now[0]):
        now[0] += 1.5
        assert budgets.current().left() == 3.5
        with budgets.budget(60.0, clock=lambda: now[0]):
            assert budgets.current().left() == 3.5
        with budgets.budget(1.0, clock=lambda: now[0]):
            assert budgets.current().left() == 1.0
    assert budgets.current() is None
