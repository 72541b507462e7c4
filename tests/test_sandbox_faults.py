"""Sandbox rate window (crm-api.md §4) and injected faults over real HTTP: latency, 5xx share,
drop after commit, 429 bursts, HTTP-date Retry-After; plus crash safety (kill -9 of the
sandbox process, a client vanishing mid-request) and concurrent writers."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

from bulkcrm.sandbox import Faults, Sandbox
from tests.conftest import OTHER_KEY, TEST_KEY

LD = {"Content-Type": "application/ld+json"}


def get(sb, key=TEST_KEY, path="/organizations") -> requests.Response:
    return requests.get(sb.url + path, headers={"X-API-KEY": key}, timeout=10)


def post(sb, body, key=TEST_KEY) -> requests.Response:
    return requests.post(sb.url + "/organizations", json=body,
                         headers={"X-API-KEY": key, **LD}, timeout=10)


# -- rate window -----------------------------------------------------------------------------------

def test_21st_request_in_60s_is_429_shared_by_tenant_keys():
    keys = {"a1": "tenant-a", "a2": "tenant-a", "b1": "tenant-b"}
    with Sandbox(api_keys=keys, rate_limit=(20, 60.0)) as sb:
        statuses = [get(sb, "a1" if i % 2 else "a2").status_code for i in range(20)]
        assert statuses == [200] * 20
        for key in ("a1", "a2"):                                    # same tenant, same budget
            resp = get(sb, key)
            assert resp.status_code == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert resp.headers["Content-Type"] == "application/problem+json; charset=utf-8"
            assert resp.json()["detail"] == "Too Many Requests" and resp.json()["status"] == 429
        assert get(sb, "b1").status_code == 200                     # another tenant is not
        assert get(sb, "wrong-key").status_code == 401              # 401: not counted
        log = sb.requests
        assert [r.status for r in log].count(429) == 2 and len(log) == 24
        assert {r.tenant for r in log if r.status == 429} == {"tenant-a"}


def test_window_slides_and_errors_count_but_429s_do_not():
    with Sandbox(api_keys={"k": "t"}, rate_limit=(5, 2.0)) as sb:
        started = time.monotonic()
        statuses = [get(sb, "k", "/nothing").status_code for _ in range(3)]   # 404s count
        statuses += [get(sb, "k").status_code for _ in range(4)]
        assert statuses == [404] * 3 + [200, 200, 429, 429]
        wait = int(get(sb, "k").headers["Retry-After"])
        assert 1 <= wait <= 2
        time.sleep(max(0.0, started + 2.05 - time.monotonic()))     # oldest ones leave the window
        assert get(sb, "k").status_code == 200
        sb.set_rate_limit(None)
        assert [get(sb, "k").status_code for _ in range(10)] == [200] * 10


def test_latency_does_not_shift_the_window():
    with Sandbox(api_keys={"k": "t"}, rate_limit=(2, 60.0), latency_ms=150) as sb:
        started = time.monotonic()
        assert [get(sb, "k").status_code for _ in range(3)] == [200, 200, 429]
        assert time.monotonic() - started >= 0.3                    # the two 200s waited
        assert sb.requests[-1].time - sb.requests[0].time >= 0.3


# -- faults ------------------------------------------------------------------------------------------

def test_latency_fault(crm):
    crm.set_faults(latency_ms=200)
    started = time.monotonic()
    assert get(crm).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_error_share_answers_5xx_before_any_write(crm):
    crm.set_faults(error_rate=1.0, error_statuses=(503,))
    resp = post(crm, {"title": "Never"})
    assert resp.status_code == 503 and resp.json()["detail"] == "Service Unavailable"
    assert crm.store.count("organizations") == 0
    crm.set_faults(error_rate=0.5, seed=11)
    first = [get(crm).status_code for _ in range(30)]
    crm.set_faults(error_rate=0.5, seed=11)
    assert [get(crm).status_code for _ in range(30)] == first      # reproducible with a seed
    assert set(first) - {200} <= {500, 502, 503} and 200 in first and len(set(first)) > 1


def test_drop_after_commit(crm):
    crm.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        post(crm, {"title": "Committed"})
    assert [o["title"] for o in crm.store.all("organizations")] == ["Committed"]
    assert get(crm).status_code == 200                              # reads are never dropped
    assert [(r.method, r.status, r.dropped) for r in crm.requests] == [
        ("POST", 201, True), ("GET", 200, False)]


def test_burst_429_then_normal(crm):
    crm.set_rate_limit(3, 60.0)
    try:
        crm.set_faults(burst_429=2)
        burst = [get(crm) for _ in range(2)]
        assert [r.status_code for r in burst] == [429, 429]
        assert [r.headers["Retry-After"] for r in burst] == ["1", "1"]
        assert crm.faults.burst_429 == 0
        assert [get(crm).status_code for _ in range(4)] == [200, 200, 200, 429]   # burst uncounted
    finally:
        crm.set_rate_limit(None)


def test_retry_after_as_http_date(crm):
    crm.set_faults(Faults(burst_429=1, retry_after_http_date=True))
    resp = get(crm)
    assert resp.status_code == 429
    when = parsedate_to_datetime(resp.headers["Retry-After"]).timestamp()
    now = parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert 1 <= when - now <= 2


# -- crash safety and concurrency ---------------------------------------------------------------

def test_client_vanishing_mid_body_writes_nothing(crm):
    host, port = crm.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /organizations HTTP/1.1\r\nHost: x\r\nX-API-KEY: " + TEST_KEY.encode()
                  + b"\r\nContent-Type: application/ld+json\r\nContent-Length: 500\r\n\r\n"
                  + b'{"title": "half')
    time.sleep(0.2)
    assert crm.store.count("organizations") == 0
    assert post(crm, {"title": "Next"}).status_code == 201


def test_concurrent_writers(crm):
    def work(n: int) -> None:
        with requests.Session() as s:
            for i in range(15):
                s.post(crm.url + "/organizations", json={"title": f"{n}-{i}"},
                       headers={"X-API-KEY": TEST_KEY if n % 2 else OTHER_KEY, **LD})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert crm.store.count("organizations", "tenant-a") == 90
    assert get(crm).json()["totalItems"] == 90 and len(crm.requests) == 91


@pytest.mark.slow
def test_killed_sandbox_process_keeps_committed_data(tmp_path):
    db = tmp_path / "crm.sqlite"
    env = {**os.environ, "BULKCRM_SANDBOX_KEYS": "proc-key"}
    proc = subprocess.Popen([sys.executable, "-m", "bulkcrm.sandbox.server", "--port", "0",
                             "--db", str(db), "--rate-limit", "off"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("Sandbox listening on http://127.0.0.1:") and "proc-key" not in line
        assert line.endswith(f"(no rate limit; 1 API key(s), 1 tenant(s); SQLite {db}; Ctrl-C stops it)")
        url = line.split()[3]
        for i in range(25):
            assert requests.post(url + "/organizations", json={"title": f"T{i}"},
                                 headers={"X-API-KEY": "proc-key", **LD}).status_code == 201
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    titles = [o["title"] for o in Sandbox(db_path=db).store.all("organizations")]
    assert titles == [f"T{i}" for i in range(25)]
