"""reconcile.py with fake drivers: the order of the layers, their independence, verification,
and the nftables-only repair path. The drivers' real behaviour is proven in the lab; here the
Reconciler's own decisions are (the fakes implement calfwd.drivers' protocols)."""

from __future__ import annotations

from typing import Any, List

from calfwd import config as cfg
from calfwd.desired import HostFacts
from calfwd.drivers import FirewalldDriver, NftDriver
from calfwd.judge.blockers import FirewalldPaths
from calfwd.commands.cleanup import Cleanup, CleanupResult
from calfwd.reconcile import PATHS, Reconciler
from fakes.firewalld import FakeFirewalld
from fakes.nft import FakeNft

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16", "fd00:10:244::/48"]\nnat_outgoing = true\n',
                   "/etc/calfwd/calfwd.toml")
NO_FIREWALLD = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n[firewalld]\nenabled = false\n',
                         "/etc/calfwd/calfwd.toml")


def refusing(running: bool = True) -> FakeFirewalld:
    """Running, nothing of calfwd's there; every write fails (to prove layer independence)."""
    return FakeFirewalld(running=running, fail="ACCESS_DENIED")


def test_fakes_fit_the_protocols():
    nft: NftDriver = FakeNft()
    fw: FirewalldDriver = FakeFirewalld()
    assert Reconciler(nft, fw).nft is nft


def test_what_shuts_a_path_is_the_paths_layer_and_never_unverifies_calfwds_objects():
    nft, fw = FakeNft(), refusing()
    fw.paths = FirewalldPaths(panic=True)
    forwarding = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "1"}
    r = Reconciler(nft, fw, forwarding=lambda: forwarding)
    layers, _facts = r.plan(CONFIG)
    paths = layers[-1]
    assert paths.layer == PATHS and not paths.in_sync and paths.actions == ()
    assert [b.kind for b in paths.plan] == ["forwarding", "panic"]
    assert "net.ipv4.ip_forward = 0" in paths.blocking[0] and "panic mode" in paths.blocking[1]
    clear = Reconciler(FakeNft(), None, forwarding=lambda: {})
    assert clear.reconcile(NO_FIREWALLD, "start").layers[-1].in_sync
    fw.paths, forwarding["net.ipv4.ip_forward"] = FirewalldPaths(), "1"
    assert r.judge_paths(CONFIG).blocking == ()


def test_creates_the_table_then_finds_nothing_to_do():
    nft = FakeNft()
    r = Reconciler(nft)
    first = r.reconcile(NO_FIREWALLD, "start")
    assert first.verified and first.errors == () and nft.batches == 1
    assert first.layers[0].actions == ("table inet calfwd is missing",)
    assert first.layers[1].note.startswith("disabled in the config")
    second = r.reconcile(NO_FIREWALLD, "resync")
    assert second.verified and second.changes == 0 and nft.batches == 1, "no write when nothing differs"


def test_a_failing_layer_never_stops_the_other():
    nft, fw = FakeNft(), refusing()
    outcome = Reconciler(nft, fw).reconcile(CONFIG, "start")
    assert nft.batches == 1 and fw.applied == 1
    assert outcome.errors == ("firewalld: ACCESS_DENIED",) and not outcome.verified
    broken = Reconciler(FakeNft(fail="netlink: Operation not permitted"), refusing())
    outcome = broken.reconcile(CONFIG, "start")
    assert outcome.errors[0] == "nftables: netlink: Operation not permitted"
    assert len(outcome.errors) == 2 and outcome.facts.firewalld_version == "1.3.3"


def test_firewalld_absent_is_a_note_not_an_error():
    outcome = Reconciler(FakeNft(), refusing(running=False)).reconcile(CONFIG, "start")
    assert outcome.verified and outcome.errors == ()
    assert outcome.layers[1].note.startswith("firewalld is not running")


def test_the_repair_path_touches_nftables_only_and_its_own_write_plans_nothing():
    nft, fw = FakeNft(), refusing()
    r = Reconciler(nft, fw)
    layer, errors, _seconds = r.reconcile_nft(CONFIG)
    assert errors == () and not layer.empty and nft.batches == 1 and fw.applied == 0
    layer, errors, _seconds = r.reconcile_nft(CONFIG)  # the monitor echoes calfwd's own write
    assert layer.empty and nft.batches == 1
    layer, errors, _seconds = Reconciler(FakeNft(fail="boom")).reconcile_nft(CONFIG)
    assert errors == ("nftables: boom",) and layer.empty


def test_cleanup_removes_the_table_and_only_it():
    nft = FakeNft()
    nft.tables_[("inet", "filter")] = [{"table": {"family": "inet", "name": "filter"}}]
    r = Reconciler(nft)
    r.reconcile(NO_FIREWALLD)
    result = Cleanup(r.nft, r.firewalld, None).run(NO_FIREWALLD)
    assert result.removed == ("remove table inet calfwd",) and result.clean
    assert list(nft.tables_) == [("inet", "filter")]
    assert Cleanup(r.nft, r.firewalld, None).run(NO_FIREWALLD) == CleanupResult()


def test_a_concurrent_writer_is_settled_by_planning_again():
    """Six concurrent `calfwd apply`: the losers of the race to create the zone get
    NAME_CONFLICT from firewalld; calfwd reads again and goes on (issue 11, item 12)."""
    from calfwd.drivers.errors import FirewalldError

    class Racing(FakeFirewalld):
        def apply(self, plan: Any) -> None:
            self.applied += 1
            if self.applied == 1:
                raise FirewalldError("create zone 'calfwd'", message="NAME_CONFLICT: new_zone(): 'calfwd'")

    fw = Racing()
    outcome = Reconciler(FakeNft(), fw).reconcile(CONFIG, "start")
    assert fw.applied == 2 and outcome.errors == ()

    class Hopeless(FakeFirewalld):
        def apply(self, plan: Any) -> None:
            self.applied += 1
            raise FirewalldError("create zone 'calfwd'", message="NAME_CONFLICT: new_zone(): 'calfwd'")

    fw = Hopeless()
    outcome = Reconciler(FakeNft(), fw).reconcile(CONFIG, "start")
    assert fw.applied == 3 and "NAME_CONFLICT" in outcome.errors[0]


class UnknowableFirewalld(FakeFirewalld):
    """firewalld owns its name but calfwd cannot know its state (hung, no bus, denied)."""

    def facts(self) -> HostFacts:
        from calfwd.drivers.errors import FirewalldError
        raise FirewalldError("read property state", "org.freedesktop.DBus.Error.NoReply", "no reply")


def test_a_firewalld_that_cannot_be_asked_is_an_error_never_in_sync():
    """Issue 11 item 5: 0.1 took 'no answer' for 'not running' and said in sync."""
    r = Reconciler(FakeNft(), UnknowableFirewalld())
    layers, _facts = r.plan(CONFIG)
    assert layers[0].layer == "nftables" and layers[0].actions  # the other layer still shows
    assert layers[1].error and not layers[1].in_sync and not layers[1].note
    outcome = r.reconcile(CONFIG, "resync")
    assert not outcome.verified and outcome.errors and "no reply" in outcome.errors[0]


class ReloadingFirewalld(FakeFirewalld):
    """Takes every write; keeps the reload's callback so the test decides when it is over."""

    def __init__(self) -> None:
        super().__init__()
        self.reload_done: Any = None

    def reload_async(self, done: Any) -> None:
        self.reload_done = done


def test_the_daemons_reload_is_sent_without_waiting_and_verified_when_over():
    """Issue 11 item 13: a hung reload held the daemon's loop for 60 s."""
    fw = ReloadingFirewalld()
    finals: List[Any] = []
    r = Reconciler(FakeNft(), fw)
    outcome = r.reconcile(CONFIG, "start", reload_later=finals.append)
    assert outcome.pending_reload and not outcome.verified and outcome.errors == ()
    assert fw.ops and all(op.verb != "reload" for op in fw.ops), "the reload itself goes async"
    assert fw.reload_done is not None and finals == []
    fw.reload_done(RuntimeError("reload firewalld: no reply"))
    (final,) = finals
    assert not final.pending_reload and final.errors == ("firewalld: reload firewalld: no reply",)
    assert not final.verified and final.layers == outcome.layers


def test_the_cli_still_waits_for_the_reload_itself():
    fw = ReloadingFirewalld()
    outcome = Reconciler(FakeNft(), fw).reconcile(CONFIG, "cli")
    assert not outcome.pending_reload and fw.reload_done is None
    assert fw.ops[-1].verb == "reload"


def test_the_reload_is_sent_even_when_the_nftables_layer_failed():
    fw = ReloadingFirewalld()
    finals: List[Any] = []
    outcome = Reconciler(FakeNft(fail="no CAP_NET_ADMIN"), fw).reconcile(CONFIG, "start", reload_later=finals.append)
    assert outcome.pending_reload and fw.reload_done is not None
    fw.reload_done(None)
    assert finals[0].errors == ("nftables: no CAP_NET_ADMIN",) and not finals[0].verified


def test_strict_forward_ports_is_never_in_sync():
    class Strict(FakeFirewalld):
        def facts(self) -> HostFacts:
            return HostFacts(firewalld_running=True, firewalld_version="2.3.1", strict_forward_ports=True)

        def apply(self, plan: Any) -> None:
            pass
    layers, _facts = Reconciler(FakeNft(), Strict()).plan(CONFIG)
    assert not layers[1].in_sync and "StrictForwardPorts=yes" in layers[1].blocking[0]


def test_a_dispatch_with_nothing_recognised_is_unread_not_nobody_wins():
    from calfwd.reconcile import with_dispatch
    contested = FirewalldPaths(active={"calfwd": (("cali+",), ()), "drop": (("cali0123456789a",), ())},
                               targets={"drop": "DROP"})
    nft = FakeNft()
    assert with_dispatch(nft, contested, "nftables", "calfwd", ("cali+",), ("cali0123456789a",)).dispatch is None
    assert with_dispatch(nft, contested, "iptables", "calfwd", ("cali+",), ("cali0123456789a",)) is contested
