"""Issue 3: `bulkcrm sandbox` as a user starts it: a process on 127.0.0.1 only."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import requests

from bulkcrm.cli import cli


def _start(*args):
    proc = subprocess.Popen([sys.executable, "-m", "bulkcrm", "sandbox", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, line + proc.stderr.read()
    return proc, m.group(0)


def test_sandbox_command_listens_on_loopback_with_key_and_limit(tmp_path):
    proc, url = _start("--api-key", "k-123", "--rate-limit", "20/60", "--db", str(tmp_path / "s.sqlite"))
    try:
        assert "k-123" not in url
        assert requests.get(f"{url}/organizations", timeout=5).status_code == 401
        statuses = [requests.get(f"{url}/organizations", headers={"X-API-KEY": "k-123"}, timeout=5).status_code
                    for _ in range(21)]
        assert statuses[:20] == [200] * 20 and statuses[20] == 429
        r = requests.get(f"{url}/organizations", headers={"X-API-KEY": "k-123"}, timeout=5)
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    finally:
        proc.terminate()
        proc.wait(10)


def test_sandbox_refuses_a_non_loopback_host(runner):
    result = runner.invoke(cli, ["sandbox", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2 and "loopback" in result.output.lower()


def test_sandbox_seed_file(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text("organizations:\n  - title: Seeded BV\n    emailAddresses: [{email: a@seeded.example}]\n"
                    "tags:\n  - title: VIP\n", encoding="utf-8")
    proc, url = _start("--api-key", "k", "--rate-limit", "off", "--seed", str(seed))
    try:
        deadline = time.monotonic() + 5
        body = requests.get(f"{url}/organizations", headers={"X-API-KEY": "k"}, timeout=5).json()
        while not body["member"] and time.monotonic() < deadline:
            body = requests.get(f"{url}/organizations", headers={"X-API-KEY": "k"}, timeout=5).json()
        assert [o["title"] for o in body["member"]] == ["Seeded BV"]
        tags = requests.get(f"{url}/tags", headers={"X-API-KEY": "k"}, timeout=5).json()
        assert [t["title"] for t in tags["member"]] == ["VIP"]
        # a seed without note categories gets the embedded sandbox's (notes need a category)
        cats = requests.get(f"{url}/note_categories", headers={"X-API-KEY": "k"}, timeout=5).json()
        assert [c["title"] for c in cats["member"]] == ["Call", "Meeting", "E-mail", "Note"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_sandbox_fault_flags_429_burst_as_http_date():
    proc, url = _start("--api-key", "k", "--rate-limit", "off", "--burst-429", "2", "--retry-after-http-date")
    try:
        first = [requests.get(f"{url}/organizations", headers={"X-API-KEY": "k"}, timeout=5) for _ in range(3)]
        assert [r.status_code for r in first] == [429, 429, 200]
        assert first[0].headers["Retry-After"].endswith("GMT")
    finally:
        proc.terminate()
        proc.wait(10)
