"""Shared fixtures: a real sandbox HTTP server on 127.0.0.1 (ephemeral port) in a thread.

- `sandbox`: session-scoped `bulkcrm.sandbox.Sandbox`, rate limit off, key `TEST_KEY`.
- `crm`: the same sandbox, reset (data, request log, faults, rate window) before each test.
- `client`: a `bulkcrm.client.Client` for `crm` with client-side pacing off.
- `runner`: click's CliRunner, in the test's temporary folder.
- `FakeClock`: a client clock that moves only when the client sleeps.
An autouse fixture clears `BULKCRM_*` variables so no test reaches a real account, and puts
the target locks in the session's temporary folder (`XDG_CACHE_HOME`).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = SHARED / "cases"
DATA = SHARED / "data"
TEST_KEY = "test-key-7f3a9c"
OTHER_KEY = "other-key-of-same-tenant"


class FakeClock:
    """Monotonic seconds that only move when the client sleeps (`Client(clock=clock,
    sleep=clock.sleep)`): a test of waits and retries takes no real time."""

    def __init__(self, t: float = 1000.0):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    now = __call__

    def sleep(self, s: float) -> None:
        assert s >= 0
        self.sleeps.append(s)
        self.t += s


def pytest_configure(config):
    if not (SHARED / "crm-api.md").exists():
        raise pytest.UsageError(
            f"the tests read the API fact sheet, cases and data of {SHARED} (crm-api.md, cases/, "
            "data/); clone bulkcrm beside that shared/ folder and run the tests again")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path_factory):
    import os

    for name in list(os.environ):
        if name.startswith("BULKCRM_"):
            monkeypatch.delenv(name)
    # target locks (`journal.target_lock`) and saved request windows (`target.save_window`) in a
    # folder of the test's own, not the user's cache: tests sharing the session's sandbox do
    # not wait for each other's requests; subprocesses inherit it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def sandbox():
    from bulkcrm.sandbox import Sandbox

    sb = Sandbox(api_keys={TEST_KEY: "tenant-a", OTHER_KEY: "tenant-a", "foreign-key": "tenant-b"},
                 rate_limit=None, control=True)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def crm(sandbox):
    sandbox.reset()
    return sandbox


@pytest.fixture
def client(crm):
    from bulkcrm.client import Client

    return Client(crm.url, TEST_KEY, requests_per_minute=None)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """click's CliRunner, run in the test's own folder: a command's default report folder
    (`reports/<name>`, relative) never lands in the checkout."""
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    return CliRunner()
