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


def test_sandbox_log_prints_a_line_per_request_and_no_key():
    """`--log`: a line per API request on stderr (method, path and query, status, tenant), so a
    user sees the 429s their runs meet; the key travels in a header and is never printed."""
    proc, url = _start("--api-key", "k-secret-1", "--rate-limit", "2/60", "--log")
    try:
        requests.get(f"{url}/organizations?itemsPerPage=1", timeout=5)
        for _ in range(3):
            requests.get(f"{url}/organizations", headers={"X-API-KEY": "k-secret-1"}, timeout=5)
        requests.get(f"{url}/k-secret-1/organizations?t=k-secret-1", timeout=5)  # a key put in a URL
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = [ln for ln in err.splitlines() if " GET " in ln]
    assert [ln.split(" ", 1)[1] for ln in lines] == [
        "GET /organizations?itemsPerPage=1 -> 401 (key refused)",
        "GET /organizations -> 200 (tenant default)", "GET /organizations -> 200 (tenant default)",
        "GET /organizations -> 429 (tenant default)", "GET /***/organizations?t=*** -> 401 (key refused)"]
    assert "k-secret-1" not in err


def test_sandbox_fault_flags_429_burst_as_http_date():
    proc, url = _start("--api-key", "k", "--rate-limit", "off", "--burst-429", "2", "--retry-after-http-date")
    try:
        first = [requests.get(f"{url}/organizations", headers={"X-API-KEY": "k"}, timeout=5) for _ in range(3)]
        assert [r.status_code for r in first] == [429, 429, 200]
        assert first[0].headers["Retry-After"].endswith("GMT")
    finally:
        proc.terminate()
        proc.wait(10)


def test_what_the_sandbox_cannot_use_is_one_clear_line(runner, tmp_path):
    """A busy port, a --db that is no database and a seed that does not parse: exit 2 with a
    line that names the option or file, never a traceback (the trial's busy port did)."""
    import socket

    with socket.socket() as busy:  # another program's port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli, ["sandbox", "--port", str(port)])
    assert result.exit_code == 2 and f"127.0.0.1:{port} is in use" in result.output
    assert "--port 0" in result.output and not isinstance(result.exception, OSError)
    result = runner.invoke(cli, ["sandbox", "--port", "99999"])  # was an OverflowError (a trial)
    assert result.exit_code == 2 and "99999 is not in the range 0<=x<=65535" in result.output
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name\nAcme\n", encoding="utf-8")
    result = runner.invoke(cli, ["sandbox", "--port", "0", "--db", str(sheet)])
    assert result.exit_code == 2 and f"cannot use {sheet} as the sandbox's SQLite database" in result.output
    assert sheet.read_text(encoding="utf-8") == "name\nAcme\n"  # left as it was
    seed = tmp_path / "seed.json"
    seed.write_text('{"organizations": [', encoding="utf-8")
    result = runner.invoke(cli, ["sandbox", "--port", "0", "--seed", str(seed)])
    assert result.exit_code == 2 and f"{seed}: not a JSON/YAML seed" in result.output
    assert "Traceback" not in result.output


def test_an_embedded_sandbox_file_that_is_no_database_is_named(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".bulkcrm").mkdir()
    (tmp_path / ".bulkcrm" / "sandbox.sqlite").write_text("not a database", encoding="utf-8")
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name\nAcme\n", encoding="utf-8")
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nfields:\n  title: name\n", encoding="utf-8")
    result = runner.invoke(cli, ["import", str(sheet), "-t", str(template), "--mode", "create-only"])
    assert result.exit_code == 2 and "the embedded sandbox: cannot use" in result.output
    assert "move the file away" in result.output and not isinstance(result.exception, ValueError)
