"""bulkcrm.client against the real sandbox over HTTP (fixtures `crm`/`client`), plus the pure
helpers (`redact`, query encoding) and one real refused connection."""
from __future__ import annotations

import shutil
import socket
import time

import pytest
import requests

from bulkcrm.client import Client, redact
from bulkcrm.errors import (AuthError, PermanentApiError, TransientApiError,
                            UncertainWriteError)
from conftest import TEST_KEY

ORG = {"title": "Łódź Café B.V.", "emailAddresses": [{"email": "info@lodz-cafe.example"}],
       "website": "https://lodz-cafe.example"}


def content_types(client: Client) -> list[tuple[str, str | None]]:
    """Record (method, Content-Type) of every request the client's session sends."""
    seen: list[tuple[str, str | None]] = []
    client._session.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.method, r.request.headers.get("Content-Type"))))
    return seen


def test_crud_round_trip(client):
    created = client.post("/organizations", ORG)
    assert created.status == 201 and created.iri.startswith("/organizations/")
    assert created.body["title"] == "Łódź Café B.V." and created.attempts == 1
    assert client.get(created.iri)["emailAddresses"][0]["email"] == "info@lodz-cafe.example"

    replaced = client.put(created.iri, {"title": "Łódź Café"})
    assert replaced.status == 200 and replaced.body["title"] == "Łódź Café"
    assert not replaced.body.get("website")                   # PUT reset the omitted field

    patched = client.patch(created.iri, {"website": "https://cafe.example"})
    assert patched.status == 200 and patched.iri == created.iri
    assert client.get(created.iri)["title"] == "Łódź Café"     # merge patch kept the rest

    assert client.delete(created.iri).status == 204
    with pytest.raises(PermanentApiError) as info:
        client.get(created.iri)
    assert info.value.status == 404 and info.value.detail == "Not Found"
    assert client.requests_sent == 7 and client.retries == 0


def test_content_types_per_verb(client):
    seen = content_types(client)
    iri = client.post("/organizations", ORG).iri
    client.patch(iri, {"website": None})
    client.put(iri, ORG)
    assert seen == [("POST", "application/ld+json"), ("PATCH", "application/merge-patch+json"),
                    ("PUT", "application/ld+json")]


def test_iter_pages_follows_view_next(client, crm):
    crm.seed({"organizations": [{"title": f"Org {i:02d}"} for i in range(70)]})
    pages = list(client.iter_pages("/organizations"))
    assert [len(p["member"]) for p in pages] == [30, 30, 10]
    assert [(r.method, r.path, r.status) for r in crm.requests] == [
        ("GET", "/organizations", 200)] * 3
    assert [r.query for r in crm.requests] == [
        "itemsPerPage=30", "itemsPerPage=30&page=2", "itemsPerPage=30&page=3"]
    titles = {m["title"] for m in client.list_all("/organizations")}
    assert titles == {f"Org {i:02d}" for i in range(70)}


def test_list_params_become_repeated_bracket_keys(client, crm):
    a = client.post("/organizations", {"title": "A", "emailAddresses": [{"email": "a@x.example"}]})
    b = client.post("/organizations", {"title": "B", "emailAddresses": [{"email": "b@x.example"}]})
    client.post("/organizations", {"title": "C", "emailAddresses": [{"email": "c@x.example"}]})
    found = client.list_all("/organizations", {"identifiers": ["a@x.example", "b@x.example"]})
    assert {m["@id"] for m in found} == {a.iri, b.iri}


def test_401_is_auth_error_with_clear_text(crm):
    bad = "wrong key/+ä"
    c = Client(crm.url, bad, requests_per_minute=None)
    with pytest.raises(AuthError) as info:
        c.get("/organizations")
    assert str(info.value) == ("the API key was rejected (401): check --api-key / BULKCRM_API_KEY "
                               "(GET /organizations: Invalid API key.)")
    assert info.value.status == 401 and c.requests_sent == 1 and c.retries == 0
    for text in (str(info.value), repr(info.value), repr(c), info.value.url, info.value.detail):
        assert bad not in text and requests.utils.quote(bad, safe="") not in text


def test_403_on_another_tenants_record_is_auth_error(client, crm):
    iri = client.post("/organizations", ORG).iri
    foreign = Client(crm.url, "foreign-key", requests_per_minute=None)
    with pytest.raises(AuthError) as info:
        foreign.patch(iri, {"website": None})
    assert (info.value.status, info.value.detail, foreign.requests_sent) == (403, "Access Denied.", 1)
    assert client.get(iri)["website"] == ORG["website"]


def test_422_carries_violations(client):
    with pytest.raises(PermanentApiError) as info:
        client.post("/organizations", {"title": ""})
    err = info.value
    assert err.status == 422 and err.detail == "title: This value should not be blank."
    assert [(v["propertyPath"], v["message"]) for v in err.violations] == [
        ("title", "This value should not be blank.")]
    assert str(err) == "POST /organizations failed (422): title: This value should not be blank."


def test_5xx_is_retried_for_get(crm):
    c = Client(crm.url, TEST_KEY, requests_per_minute=None, backoff_base_s=0.01)
    crm.set_faults(error_rate=0.4, error_statuses=(500,), seed=1)  # at most 2 failures in a row
    for _ in range(10):
        assert c.get("/organizations")["totalItems"] == 0
    statuses = [r.status for r in crm.requests]
    failed = sum(s >= 500 for s in statuses)
    assert failed > 0 and statuses.count(200) == 10 and len(statuses) == 10 + failed
    assert c.retries == failed and c.requests_sent == len(statuses)


def test_post_dropped_after_commit_is_uncertain(client, crm, caplog):
    crm.set_faults(drop_rate=1.0)
    with caplog.at_level("DEBUG", logger="bulkcrm.client"), pytest.raises(UncertainWriteError) as info:
        client.post("/organizations", ORG)
    assert info.value.method == "POST" and info.value.url == "/organizations"
    # --debug's line per request: also for a write whose answer was lost
    assert any(r.getMessage().startswith("POST /organizations -> no answer") for r in caplog.records)
    assert "may have been committed" in str(info.value)
    assert client.requests_sent == 1                           # never resent blindly
    crm.clear_faults()
    assert [m["title"] for m in client.list_all("/organizations")] == [ORG["title"]]


def test_post_to_closed_port_is_retried_then_transient():
    with socket.socket() as s:                                 # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    c = Client(f"http://127.0.0.1:{port}", TEST_KEY, requests_per_minute=None, max_attempts=3,
               sleep=sleep, clock=lambda: now[0])
    with pytest.raises(TransientApiError) as info:
        c.post("/organizations", ORG)
    assert not isinstance(info.value, UncertainWriteError)     # provably never sent
    assert c.requests_sent == 3 and len(waits) == 2
    assert str(info.value) == (f"POST /organizations: no answer from http://127.0.0.1:{port} after 3 attempts "
                               f"(ConnectionError); is the server at http://127.0.0.1:{port} running, and the "
                               "address right?")


def test_https_to_a_plain_http_server_fails_at_once_and_says_why(crm):
    """A TLS handshake with a server that speaks plain HTTP (the sandbox): no request left,
    so a POST is no uncertain write, and sending again cannot help (no retries)."""
    c = Client(crm.url.replace("http://", "https://"), TEST_KEY, requests_per_minute=None,
               sleep=lambda s: pytest.fail("no retry expected"))
    with pytest.raises(TransientApiError) as info:
        c.post("/organizations", ORG)
    assert not isinstance(info.value, UncertainWriteError)
    assert c.requests_sent == 1 and info.value.detail == "WRONG_VERSION_NUMBER"
    assert "does not speak HTTPS" in str(info.value) and "nothing was sent" in str(info.value)
    assert Client(crm.url, TEST_KEY, requests_per_minute=None).list_all("/organizations") == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a certificate")
def test_untrusted_certificate_fails_at_once_and_says_why(tmp_path):
    """A real TLS server on 127.0.0.1 with a self-signed certificate: refused by certificate
    verification, reported as such (a company proxy's CA), never retried."""
    import http.server
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = Client(f"https://127.0.0.1:{server.server_port}", TEST_KEY, requests_per_minute=None,
                   sleep=lambda s: pytest.fail("no retry expected"))
        with pytest.raises(TransientApiError) as info:
            c.get("/organizations")
    finally:
        server.shutdown()
    assert info.value.detail == "CERTIFICATE_VERIFY_FAILED" and c.requests_sent == 1
    assert "certificate is not trusted" in str(info.value) and "REQUESTS_CA_BUNDLE" in str(info.value)


def test_a_base_url_with_a_path_too_many_is_named_on_the_404(crm):
    c = Client(crm.url + "/api", TEST_KEY, requests_per_minute=None)
    with pytest.raises(PermanentApiError) as info:
        c.get("/organizations", {"itemsPerPage": 1})
    assert info.value.status == 404
    assert f"the API always has /organizations, so check the base URL {crm.url}/api" in str(info.value)
    with pytest.raises(PermanentApiError) as other:               # any other 404 says nothing of it
        Client(crm.url, TEST_KEY, requests_per_minute=None).get("/organizations/nope")
    assert "check the base URL" not in str(other.value)


def test_key_never_shown(crm):
    events: list[tuple[str, dict]] = []
    c = Client(crm.url + "/", TEST_KEY, requests_per_minute=None,
               on_event=lambda e, i: events.append((e, i)))
    assert c.base_url == crm.url and TEST_KEY not in repr(c)
    with pytest.raises(PermanentApiError) as info:
        c.get(f"/organizations/{TEST_KEY}")                    # key echoed back in a URL/detail
    texts = [str(info.value), info.value.url, info.value.detail, repr(events)]
    assert all(TEST_KEY not in t for t in texts) and "***" in info.value.url


def test_redact_raw_and_url_encoded():
    assert redact("k=my key/1&x=my%20key%2F1&y=my+key%2F1", ["my key/1"]) == "k=***&x=***&y=***"
    assert redact("nothing here", ["", "secret-key"]) == "nothing here"
    # a sandbox's one-letter key is not masked: that would rewrite every "k" of the text
    assert redact("Bookkeeping Inc", ["k"]) == "Bookkeeping Inc"


def test_pacing_gives_zero_429(crm):
    crm.set_rate_limit(5, 1.0)
    try:
        c = Client(crm.url, TEST_KEY, requests_per_minute=5, window_s=1.0)
        for _ in range(15):
            c.get("/organizations")
        assert c.throttled == 0 and c.requests_sent == 15
        assert [r.status for r in crm.requests] == [200] * 15
    finally:
        crm.set_rate_limit(None)


def test_a_request_that_leaves_late_frees_its_slot_late(crm):
    """A busy machine may hold a request back after the client counted it: the server counts it
    when it arrives. The client counts a slot from the answer, so the request a window later
    never reaches the server early. (The delay before sending is the machine's, which no
    server can cause: the session's send is wrapped to sleep first.)"""
    crm.set_rate_limit(5, 1.0)
    try:
        c = Client(crm.url, TEST_KEY, requests_per_minute=5, window_s=1.0)
        send, late = c._session.request, [0.15]

        def busy(*args, **kwargs):
            if late:
                time.sleep(late.pop())  # the first request leaves 150 ms after it was counted
            return send(*args, **kwargs)

        c._session.request = busy
        for _ in range(6):
            c.get("/organizations")
        assert c.throttled == 0 and [r.status for r in crm.requests] == [200] * 6
    finally:
        crm.set_rate_limit(None)


def test_fractional_rate_paces_without_error(crm):
    """`--max-rate 7.5` style limits: pyrate counts whole requests, so 2.5 per 0.4 s is paced as
    at most 2 in any 0.4 s (a float limit crashed once the window filled)."""
    crm.set_rate_limit(3, 0.4)
    try:
        c = Client(crm.url, TEST_KEY, requests_per_minute=2.5, window_s=0.4)
        t0 = time.monotonic()
        for _ in range(7):
            c.get("/organizations")
        elapsed = time.monotonic() - t0
        assert c.throttled == 0 and [r.status for r in crm.requests] == [200] * 7
        assert elapsed >= 1.2  # pairs at 0, 0.4, 0.8 and the seventh at 1.2 s
    finally:
        crm.set_rate_limit(None)


def test_a_long_run_of_requests_logs_its_progress_every_minute(crm, caplog):
    """`Client.progress`: a line a minute (of the client's clock: here one the pacing's sleeps
    move on) says how many of the expected requests went and the time left at the rate."""
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s
    client = Client(crm.url, TEST_KEY, requests_per_minute=20, clock=lambda: now[0], sleep=sleep)
    with caplog.at_level("INFO", logger="bulkcrm.client"):
        with client.progress("matching", 60):
            for _ in range(50):
                client.request("GET", "/organizations", params={"itemsPerPage": 1})
        unpaced = Client(crm.url, TEST_KEY, requests_per_minute=None, clock=lambda: now[0])
        now[0] = 0.0
        with unpaced.progress("notes: listing", None):  # not known: the count alone
            for _ in range(20):
                now[0] += 7.0
                unpaced.request("GET", "/organizations", params={"itemsPerPage": 1})
    lines = [r.getMessage() for r in caplog.records if r.name == "bulkcrm.client" and "sent" in r.getMessage()]
    assert lines[0] == "matching: 21 of 60 requests sent, ≈ 1.9 min left …"  # 39 at 20/min
    assert lines[1] == "matching: 41 of 60 requests sent, ≈ 0.9 min left …"
    assert lines[2:] == ["notes: listing: 9 requests sent …", "notes: listing: 18 requests sent …"]


def test_a_listings_progress_takes_its_total_from_the_first_page(crm, caplog):
    """A forced scan's cost is not known before its first page: `totalItems` gives it, so the
    minute's line says how many requests are left (a review)."""
    crm.seed({"organizations": [{"title": f"O{i}"} for i in range(95)]})  # 4 pages of 30
    now = [0.0]
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, clock=lambda: now[0])
    real = client.iter_pages

    def slow_pages(*a, **k):
        for page in real(*a, **k):
            now[0] += 40.0
            yield page
    client.iter_pages = slow_pages
    with caplog.at_level("INFO", logger="bulkcrm.client"), client.progress("matching", None):
        assert len(client.list_all("/organizations")) == 95
    assert [r.getMessage() for r in caplog.records if "sent" in r.getMessage()] == [
        "matching: 3 of 4 requests sent …"]  # no rate: no time left
