"""Fixtures for Strata's end-to-end tests: free ports, S3-protocol servers (s3s-fs, moto)
and strata broker processes on 127.0.0.1.

    def test_x(strata, s3s_fs):
        broker = strata(s3=s3s_fs)          # started, ready (port accepts connections)
        broker.bootstrap                     # "127.0.0.1:PORT"
        broker.kill9(); broker.restart(drop_cache=True)

Set STRATA_BIN to test another binary than target/release/strata.
"""

from __future__ import annotations

import sys

import pytest

from harness import Moto, S3sFs, Strata, free_port


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(node) -> bool:
    return any(getattr(node, f"rep_{when}", None) is not None
               and getattr(node, f"rep_{when}").failed for when in ("setup", "call"))


def _dump_logs(brokers, why: str) -> None:
    for broker in brokers:
        sys.stderr.write(f"\n----- {why}: tail of {broker.log_path} -----\n"
                         f"{broker.log_tail(120)}\n")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def s3s_fs(tmp_path):
    """s3s-fs on a free port with bucket `strata` (a folder under its root)."""
    server = S3sFs(tmp_path / "s3s-fs").start()
    yield server
    server.stop()


@pytest.fixture
def moto(tmp_path):
    """moto's S3 server on a free port with bucket `strata`."""
    server = Moto(tmp_path / "moto").start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3s-fs"])
def store(request, tmp_path):
    """The object store a broker runs on: None for its local folder (DIR/objects), else
    a running S3-protocol server. Parametrize indirectly to pick others ("moto")."""
    if request.param == "local":
        yield None
        return
    server = {"s3s-fs": S3sFs, "moto": Moto}[request.param](tmp_path / request.param).start()
    yield server
    server.stop()


@pytest.fixture
def strata(request, tmp_path):
    """Factory: strata(s3=None, **kwargs) starts a broker (local store unless an
    S3Server is given) and returns its harness.Strata. All are stopped at teardown, and
    their log tails printed if the test failed."""
    brokers: list[Strata] = []

    def start(name: str | None = None, **kwargs) -> Strata:
        broker = Strata(tmp_path, name=name or f"strata{len(brokers)}", **kwargs)
        brokers.append(broker)
        return broker.start()

    yield start
    failed = _failed(request.node)
    notes = []
    for broker in brokers:
        alive = broker.alive()
        code = broker.stop()
        notes.append(f"{broker.name}: alive before teardown {alive}, exit {code}")
        if code not in (None, 0, -15, 143) and not failed:
            # a clean SIGTERM shutdown must not crash
            sys.stderr.write(f"strata {broker.name} exited with {code} on SIGTERM\n")
    if failed:
        _dump_logs(brokers, f"{request.node.name} failed ({'; '.join(notes)})")


@pytest.fixture(scope="module")
def shared_strata(request, tmp_path_factory):
    """One broker on the local store for a whole module of client tests (each test uses
    its own topics)."""
    broker = Strata(tmp_path_factory.mktemp("shared"), name="shared").start()
    failures_before = request.session.testsfailed
    yield broker
    failed = request.session.testsfailed > failures_before
    alive = broker.alive()
    code = broker.stop()
    if failed or not alive or code not in (0, -15, 143):
        _dump_logs([broker], f"module {request.module.__name__} had failures "
                             f"(broker alive before teardown: {alive}, exit {code})")


@pytest.fixture
def broker(shared_strata):
    """The module's shared broker, checked alive before and after each test."""
    assert shared_strata.alive(), f"broker died earlier:\n{shared_strata.log_tail()}"
    yield shared_strata
    assert shared_strata.alive(), f"broker died during the test:\n{shared_strata.log_tail()}"
