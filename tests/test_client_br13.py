"""BR-13: 429 Too Many Requests on POST and PATCH (shared/cases/BR-13.txt).

Two layers:
- a fake clock and a scripted transport (a requests adapter mounted on the client's session,
  the allowed mock: the sandbox cannot run on a fake clock nor script exact 429 sequences);
- the same flows over real HTTP against the sandbox with `burst_429` faults.
"""
from __future__ import annotations

import json

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from bulkcrm.client import Client, parse_retry_after, safety_margin
from bulkcrm.errors import TransientApiError
from conftest import CASES, TEST_KEY, FakeClock

BASE = "http://crm.test"
EXISTING = json.loads((CASES / "BR-07.existing.json").read_text(encoding="utf-8"))
ROW1 = {"title": "Nieuwe Klant BV", "emailAddresses": [{"email": "nieuw@klant.example"}]}
ROW2_PATCH = {"website": "https://dijkstra-bouw.example"}
JSONLD_429 = {"@context": "/contexts/Error", "@type": "Error", "title": "An error occurred",
              "detail": "Too Many Requests", "status": 429}


class Script(BaseAdapter):
    """Answers requests in order from a list of (status, headers, body); records what was sent."""

    def __init__(self, clock: FakeClock, answers: list[tuple[int, dict, dict | None]]):
        super().__init__()
        self.clock, self.answers, self.sent = clock, list(answers), []

    def send(self, request, **kwargs):
        self.sent.append({"method": request.method, "path": request.path_url,
                          "body": request.body, "headers": dict(request.headers),
                          "t": self.clock()})
        status, headers, body = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code = status
        resp.reason = {200: "OK", 201: "Created", 429: "Too Many Requests"}.get(status, "")
        resp.headers = CaseInsensitiveDict({"Content-Type": "application/ld+json", **headers})
        resp._content = json.dumps(body).encode() if body is not None else b""
        resp.url, resp.request = request.url, request
        return resp

    def close(self):
        pass


def scripted(answers, **kw) -> tuple[Client, Script, FakeClock]:
    clock = FakeClock()
    script = Script(clock, answers)
    session = requests.Session()
    session.mount(BASE, script)
    client = Client(BASE, TEST_KEY, clock=clock, sleep=clock.sleep, session=session, **kw)
    return client, script, clock


def test_br13_post_and_patch_wait_and_succeed():
    org = EXISTING["@id"]
    client, script, _ = scripted([
        (429, {"Retry-After": "7"}, JSONLD_429),
        (201, {"Location": "/organizations/404"},
         {"@id": "/organizations/404", "title": ROW1["title"]}),
        (429, {}, JSONLD_429),
        (200, {}, {**EXISTING, **ROW2_PATCH}),
    ])
    created = client.post("/organizations", ROW1)
    patched = client.patch(org, ROW2_PATCH)

    post1, post2, patch1, patch2 = script.sent
    assert [s["method"] for s in script.sent] == ["POST", "POST", "PATCH", "PATCH"]
    assert post2["t"] - post1["t"] >= 7                      # Retry-After: 7 honoured
    assert post2["body"] == post1["body"] == json.dumps(ROW1, ensure_ascii=False).encode()
    assert patch2["t"] - patch1["t"] >= 3 + 1.0              # pacing gap 60/20 + backoff ≥ base
    assert patch2["body"] == patch1["body"]
    assert patch1["headers"]["Content-Type"] == "application/merge-patch+json"
    assert post1["headers"]["Content-Type"] == "application/ld+json"
    assert (created.status, created.iri, created.attempts, created.throttled) == (
        201, "/organizations/404", 2, 1)                     # one create, after one 429
    assert (patched.status, patched.iri, patched.attempts, patched.throttled) == (200, org, 2, 1)
    assert (client.requests_sent, client.throttled, client.retries) == (4, 2, 2)


def test_br13_repeated_429_grow_then_stop_at_cap():
    client, script, clock = scripted([(429, {}, JSONLD_429)] * 5 + [(200, {}, {"member": []})],
                                     backoff_max_s=5.0)
    with pytest.raises(TransientApiError) as info:
        client.patch("/organizations/101", ROW2_PATCH)
    err = info.value
    assert (err.status, err.method, err.url, err.detail) == (
        429, "PATCH", "/organizations/101", "Too Many Requests")
    assert str(err) == ("PATCH /organizations/101: rate limit (429): still throttled after 5 attempts; the "
                        "tenant's 20 requests a minute are shared by all its keys (crm-api.md §4), so another "
                        "integration may be using them: run again later, or lower --max-rate")
    times = [s["t"] for s in script.sent]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 5                                   # capped at max_attempts
    assert all(b > a for a, b in zip(gaps, gaps[1:]))         # the wait grows
    margin = safety_margin(client.window_s)  # past the exact moment, for latency
    assert gaps[0] >= 3 + 1.0 and gaps[-1] <= 3 + 5.0 + margin + 0.01  # gap + backoff, backoff capped
    assert (client.requests_sent, client.throttled, client.retries) == (5, 5, 4)
    # the caller marks the row failed and goes on; the next send still waits for the full window
    last = clock()
    assert client.get("/organizations") == {"member": []}
    assert script.sent[-1]["t"] - last >= 3


def test_br13_http_date_retry_after_is_honoured():
    client, script, _ = scripted([
        (429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT",
               "Date": "Wed, 21 Oct 2026 07:27:50 GMT"}, JSONLD_429),
        (201, {}, {"@id": "/organizations/404"}),
    ])
    assert client.post("/organizations", ROW1).iri == "/organizations/404"
    assert script.sent[1]["t"] - script.sent[0]["t"] >= 10


def test_br13_unparsable_retry_after_falls_back_to_backoff():
    events = []
    client, script, _ = scripted([(429, {"Retry-After": "in a moment"}, JSONLD_429),
                                  (201, {}, {"@id": "/organizations/404"})],
                                 on_event=lambda e, i: events.append((e, i)))
    assert client.post("/organizations", ROW1).status == 201
    assert script.sent[1]["t"] - script.sent[0]["t"] >= 3 + 1.0
    throttled = [i for e, i in events if e == "throttled"]
    assert throttled[0]["retry_after_s"] is None and throttled[0]["url"] == "/organizations"


@pytest.mark.parametrize("value, expected", [
    ("7", 7.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 10.0),
    ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),                  # in the past: no wait
    (None, None), ("", None), ("soon", None), ("-3", None), ("Wed, 99 Foo 2026", None),
])
def test_parse_retry_after(value, expected):
    from email.utils import parsedate_to_datetime

    now = parsedate_to_datetime("Wed, 21 Oct 2026 07:27:50 GMT").timestamp()
    assert parse_retry_after(value, now) == expected


# -- the same flows over real HTTP (sandbox Retry-After is ≥ 1 s, so only a few) -----------

def test_br13_sandbox_post_then_patch_after_429(crm):
    client = Client(crm.url, TEST_KEY, requests_per_minute=20, window_s=6.0)
    crm.set_faults(burst_429=1)
    created = client.post("/organizations", ROW1)
    crm.set_faults(burst_429=1)
    patched = client.patch(created.iri, ROW2_PATCH)

    assert (created.status, created.attempts, created.throttled) == (201, 2, 1)
    assert (patched.status, patched.attempts, patched.throttled) == (200, 2, 1)
    assert client.get(created.iri)["website"] == ROW2_PATCH["website"]
    writes = [r for r in crm.requests if r.method in ("POST", "PATCH")]
    assert [(r.method, r.status) for r in writes] == [("POST", 429), ("POST", 201),
                                                      ("PATCH", 429), ("PATCH", 200)]
    assert writes[1].time - writes[0].time >= 1.0            # sandbox Retry-After ≥ 1 s
    assert client.get("/organizations")["totalItems"] == 1   # exactly one create


def test_br13_sandbox_http_date_retry_after(crm):
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    crm.set_faults(burst_429=1, retry_after_http_date=True)
    created = client.post("/organizations", ROW1)
    assert created.status == 201 and created.throttled >= 1
    statuses = [r.status for r in crm.requests if r.method == "POST"]
    assert statuses[0] == 429 and statuses[-1] == 201 and statuses.count(201) == 1


def test_an_earlier_runs_requests_are_waited_for_at_most_one_window():
    """`count_earlier` (a plan's requests, counted by the apply after it): full window -> the
    first request waits one window; a plan time ahead of this clock counts as now, not later."""
    import time as _time
    client, script, clock = scripted([(200, {}, {"member": []})] * 2, requests_per_minute=2, window_s=10.0)
    client.count_earlier(5, _time.time() + 600)       # stamped by a machine whose clock runs ahead
    client.get("/organizations")
    assert 10.0 <= sum(clock.sleeps) <= 11.0
    client2, _, clock2 = scripted([(200, {}, {"member": []})], requests_per_minute=2, window_s=10.0)
    client2.count_earlier(5, _time.time() - 30)        # older than the window: nothing to wait for
    client2.get("/organizations")
    assert clock2.sleeps == []


def test_a_run_right_after_another_waits_for_the_window_it_left(tmp_path):
    """Two runs on this machine, the second a second after the first, against a server that
    allows 3 requests per 2 s: the second run's client loads the window the first one saved
    (`target.save_window`, `load_window`) and waits for its slot, so the server answers no 429;
    a plan file's count of the same three requests (`count_earlier`) adds nothing to them."""
    import time as _time

    from bulkcrm.sandbox import Sandbox
    from bulkcrm.target import load_window, save_window, window_file

    with Sandbox(api_keys={TEST_KEY: "t"}, rate_limit=(3, 2.0)) as sb:
        first = Client(sb.url, TEST_KEY, requests_per_minute=3, window_s=2.0)
        for _ in range(3):
            first.get("/organizations")
        save_window(first, sb.url)
        assert TEST_KEY not in window_file(sb.url).read_text() and len(first.sent_at) == 3
        _time.sleep(1.0)
        second = Client(sb.url, TEST_KEY, requests_per_minute=3, window_s=2.0)
        load_window(second, sb.url)
        second.count_earlier(3, _time.time())  # the same three, as `apply` counts a plan's
        t0 = _time.monotonic()
        second.get("/organizations")
        waited = _time.monotonic() - t0
        assert second.throttled == 0 and [r.status for r in sb.requests].count(429) == 0
        assert 0.5 < waited < 1.6, waited  # the first run's slots, not three more from now


def test_earlier_requests_counted_out_of_order_still_fill_the_window():
    """From a review: this machine's last run (10 requests 5 s ago, `count_sent`), then a plan
    made elsewhere 54 s ago (10 requests, `count_earlier`): the window's log stays in time
    order, so 10 s later 10 requests go at once and the next 10 wait for the first run's slots
    (~45 s), not all 20 at once; a journal's write 30 s before a saved time is another request
    (`exact`), not one already counted."""
    import time as _time
    clock = FakeClock()
    c = Client("https://api.example", TEST_KEY, requests_per_minute=20, clock=clock, sleep=clock.sleep)
    now = _time.time()
    c.count_sent([now - 5] * 10)
    c.count_earlier(10, now - 54)
    clock.t += 10
    for _ in range(20):
        c._window.answered(c._window.acquire()[1])
    assert 44.0 <= sum(clock.sleeps) <= 47.0, clock.sleeps
    d = Client("https://api.example", TEST_KEY, requests_per_minute=20)
    d.count_sent([now - 5])
    d.count_earlier(1, now - 35, exact=True)  # not the saved one: both count
    d.count_earlier(1, now - 5, exact=True)   # the saved one: counted already
    assert len(d._window._bucket.items) == 2 and d._earlier == []


def test_a_target_keeps_its_window_for_the_next_run(crm, tmp_path):
    """`open_target` with a key loads the saved window; `close` saves this run's send times
    (only times, in the user's cache folder, named by a hash of the target: never the key)."""
    from bulkcrm.target import open_target, window_file

    target = open_target(crm.url, TEST_KEY, max_rate=20)
    target.client.get("/organizations")
    target.close()
    saved = json.loads(window_file(crm.url).read_text())["sent"]
    assert len(saved) == 1 and TEST_KEY not in window_file(crm.url).read_text()
    again = open_target(crm.url, TEST_KEY, max_rate=20)
    again.client.get("/organizations")
    again.close()
    assert len(json.loads(window_file(crm.url).read_text())["sent"]) == 2


def test_a_burst_of_429_does_not_use_up_the_retries_of_a_server_error():
    """4 throttled answers, then a 500, then success: the 429s and the 5xx are counted apart
    (a fault run with --burst-429 4 and --error-rate stopped at the 500 before)."""
    client, script, _ = scripted([(429, {"Retry-After": "1"}, JSONLD_429)] * 4 + [(500, {}, None)]
                                 + [(200, {}, {"member": []})])
    assert client.get("/organizations") == {"member": []}
    assert len(script.sent) == 6 and client.throttled == 4


def test_a_first_request_that_waits_for_an_earlier_runs_requests_says_so(caplog):
    """Trial 2026-12-03: a resume right after a stop printed nothing for a minute while its
    first request waited for the stopped run's requests to leave the window: a log line says
    why it waits; the waits of later requests (pacing) say nothing."""
    import time as _time
    c, _, clock = scripted([(200, {}, {"totalItems": 0})] * 3, requests_per_minute=2)
    c.count_earlier(2, _time.time() - 10)  # a stopped run's two requests, 10 s ago
    with caplog.at_level("INFO", logger="bulkcrm"):
        for _ in range(3):
            c.get("/organizations")
    said = [r.getMessage() for r in caplog.records if r.name == "bulkcrm.client"]
    assert 50 <= clock.sleeps[0] <= 52 and len(said) == 1 and said[0] == (
        f"waiting {clock.sleeps[0]:.0f} s for the rate limit before the first request: the requests of the run "
        "before this one still count in the tenant's window …")
