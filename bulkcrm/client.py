"""HTTP client for the RogerRoger CRM API (stage: transport, used by plan, apply and export).

Input: paths such as `/organizations` and JSON-able dicts. Output: parsed JSON-LD bodies
(`dict`) or `Response` records. One `requests.Session` carries the base URL's auth header
(`X-API-KEY`, crm-api.md §2), the per-verb content types (§3), a client-side sliding window
(§4), retries on 429/5xx with `Retry-After` (RFC 9110 §10.2.3) and typed errors (§5,
`bulkcrm.errors`). The session is also the one adapter seam: tests mount a scripted
`requests` adapter on it where the sandbox cannot produce a case.

Example::

    >>> c = Client("https://api.rogerroger.io", key)          # 20 requests per 60 s
    >>> [o["title"] for o in c.list_all("/organizations", {"identifiers[]": ["a@b.example"]})]
    ['Dijkstra Bouw B.V.']
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import timezone
from typing import Any
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
from pyrate_limiter import InMemoryBucket, Rate, RateItem

from .errors import (ApiError, AuthError, PermanentApiError, TransientApiError,
                     UncertainWriteError)
from .planfile import duration_text

__all__ = ["Client", "Response", "redact", "parse_retry_after"]

log = logging.getLogger(__name__)


def _say_first_wait(seconds: float) -> None:
    """Log (INFO; the CLI shows it on stderr) a wait before a run's first request: the requests
    of the run before it (a resume after a stop, `apply` after `plan`) still fill the window."""
    log.info("waiting %.0f s for the rate limit before the first request: the requests of the run "
             "before this one still count in the tenant's window …", seconds)

JSON_LD = "application/ld+json"
MERGE_PATCH = "application/merge-patch+json"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
"""Verbs retried after a 5xx or a lost answer. PATCH counts: a merge patch (RFC 7396) sent
twice with the same body gives the same result."""
DETAIL_KEYS = ("detail", "description", "hydra:description", "message", "title")
"""Where an error body keeps its text, first present wins (crm-api.md §5.2)."""
SAFETY_MARGIN_S = 0.02
"""Least extra wait (seconds) past the exact moment a window slot frees."""
SAFETY_MARGIN_SHARE = 1 / 240
"""Extra wait as a share of the window (0.25 s of 60 s, at least `SAFETY_MARGIN_S`): timers and
millisecond stamps are not exact. A request that left late (a busy machine, a slow connection)
is counted by the server when it arrives; the client counts its slot from the answer
(`_Window.answered`), which is never earlier."""


def safety_margin(window_s: float) -> float:
    """Seconds added to every wait for a window slot (see `SAFETY_MARGIN_SHARE`)."""
    return max(SAFETY_MARGIN_S, window_s * SAFETY_MARGIN_SHARE)


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


MIN_SECRET_CHARS = 8
"""Secrets shorter than this (a local sandbox's `--api-key k`) are not masked: masking them
would rewrite ordinary text (every `k`), and bulkcrm never writes a key on purpose anyway."""


def secret_forms(secrets: Iterable[str] | None) -> list[str]:
    """Every form in which a secret may appear, longest first: raw, URL-encoded (RFC 3986 and
    form), JSON-escaped and CSV-quoted (RFC 4180 doubled quotes). Secrets shorter than
    `MIN_SECRET_CHARS` are ignored."""
    forms = {f for s in secrets or () if s and len(s) >= MIN_SECRET_CHARS
             for f in (s, quote(s, safe=""), quote_plus(s), json.dumps(s, ensure_ascii=False)[1:-1],
                       s.replace('"', '""'))}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str], mask: str = "***") -> str:
    """Return `text` with every secret, in any of its `secret_forms`, replaced by `mask`.

    Args:
        text: any string that may carry a key (URL, message, log line, report cell).
        secrets: the values to hide; empty ones are ignored.
    """
    for form in secret_forms(secrets):
        text = text.replace(form, mask)
    return text


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Return the wait (seconds, ≥ 0) a `Retry-After` header asks for, or None.

    Accepts both forms of RFC 9110 §10.2.3: delay-seconds (`7`, also `7.5`) and an HTTP-date
    (`Wed, 21 Oct 2026 07:28:00 GMT`, parsed by `email.utils.parsedate_to_datetime`), the
    latter measured from `now_epoch` (Unix seconds; a date in the past gives 0).
    Unparsable, negative or missing values give None (callers fall back to backoff).
    """
    value = (value or "").strip()
    if not value:
        return None
    if _NUMBER.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now_epoch)


@dataclass
class Response:
    """What a write (or any call through `Client.request`) returned.

    Attributes:
        status: HTTP status of the final attempt (2xx/3xx; errors raise instead).
        body: parsed JSON body, or None (204, empty or non-JSON body).
        headers: response headers (case-insensitive mapping).
        iri: the record's IRI (`@id` of the body, else the `Location` path), or None.
        attempts: requests sent for this call, retries included.
        throttled: 429 answers received during this call.
    """

    status: int
    body: Any
    headers: Mapping[str, str]
    iri: str | None
    attempts: int
    throttled: int


LONG_WAIT_S = 5.0
"""Seconds of a wait for the window before a run's first request that is said (`Client`)."""


class _Window:
    """Client-side sliding window, mirroring the server's (crm-api.md §4: N per window, sliding).

    Counting is pyrate-limiter's `InMemoryBucket` with its `SlidingWindowLog` policy, driven
    non-blocking: every `RateItem` carries a timestamp from the injected clock, and the wait the
    bucket computes (until the oldest of the last N items is `window_s` old) is slept with the
    injected `sleep`. pyrate's own blocking `Limiter` is not used because it sleeps with
    `time.sleep` and reads `time.monotonic` directly, which fake-clock tests (BR-13) cannot drive.
    A slot counts from its request's answer (`answered`): the server counts a request when it
    arrives, which is never later. A gate (`block_until`) holds every send back after a 429:
    the server's window is full even when ours is not (other keys of the tenant share it).
    """

    def __init__(self, limit: float | None, window_s: float, clock: Callable[[], float],
                 sleep: Callable[[float], None]):
        # pyrate counts whole requests: a fractional limit (`--max-rate 7.5`) allows the whole
        # requests it covers in any window (7 per 60 s); under one, one per longer window
        self._limit = max(1, math.floor(limit)) if limit else None
        span = window_s / limit if limit and limit < 1 else window_s
        rate = Rate(self._limit, max(1, round(span * 1000))) if limit else None
        self._bucket = InMemoryBucket([rate]) if rate else None
        self._clock, self._sleep = clock, sleep
        self.margin = safety_margin(window_s)
        self._not_before = -math.inf
        self._lock = threading.Lock()

    def count_earlier(self, n: int, t: float) -> None:
        """Count `n` requests sent at clock time `t` by another process (at most the limit)."""
        if self._bucket is None:
            return
        with self._lock:
            for _ in range(min(n, self._limit)):
                self._bucket.put(RateItem("tenant", int(t * 1000)))
            # pyrate finds the window's edge by bisection: its log must stay in time order
            self._bucket.items.sort(key=lambda i: i.timestamp)

    def block_until(self, t: float) -> None:
        """Let no send leave before clock time `t` (seconds)."""
        with self._lock:
            self._not_before = max(self._not_before, t)

    def acquire(self, on_wait: Callable[[float], None] | None = None) -> tuple[float, RateItem | None]:
        """Wait for a free slot, take it, and return (the seconds waited, the slot's item for
        `answered`). `on_wait(seconds)` is called once before a wait of `LONG_WAIT_S` or more."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                pause = self._not_before - now
                if pause <= 0 and self._bucket is None:
                    return waited, None
                if pause <= 0:
                    item = RateItem("tenant", int(now * 1000))
                    if self._bucket.put(item):
                        if self._bucket.count() > 4 * self._limit:
                            self._bucket.leak(item.timestamp)
                        return waited, item
                    pause = self._bucket.waiting(item) / 1000 + self.margin
                if on_wait is not None and pause >= LONG_WAIT_S:
                    on_wait(pause)
                    on_wait = None
                self._sleep(pause)
                waited += pause

    def answered(self, item: RateItem | None) -> None:
        """The request of slot `item` got its answer (or failed): the server counted it at
        its arrival, which is no later than now, so the slot frees a window from now, not
        from when it was taken (a busy machine may hold a request back in between)."""
        if item is None:
            return
        with self._lock:
            item.timestamp = max(item.timestamp, int(self._clock() * 1000))
            items = self._bucket.items  # pyrate's log, in time order; another thread's slot
            if items and items[-1] is not item:  # taken meanwhile may now be out of order
                items.sort(key=lambda i: i.timestamp)


class Client:
    """Talk to the CRM API: auth, pacing, retries and typed errors (crm-api.md §2–§7).

    Args:
        base_url: e.g. `https://api.rogerroger.io` (a trailing slash is dropped).
        api_key: sent only as the `X-API-KEY` session header (§2); never shown anywhere.
        requests_per_minute: requests allowed per `window_s` (default 20, §4; may be fractional,
            as `--max-rate 7.5`); None = no pacing.
        window_s: sliding-window length in seconds (default 60.0, §4).
        timeout_s: connect and read timeout per attempt, seconds.
        max_attempts: attempts per call, first one included (default 5), counted apart for
            429s and for 5xx/connection failures: a burst of 429s does not use up the retries
            of a server error that follows it (so a call sends at most 2 × max_attempts − 1
            requests).
        backoff_base_s, backoff_max_s: exponential backoff `base * 2**(n-1) + U(0, base)`,
            capped at `backoff_max_s` (seconds).
        clock, sleep: time source (seconds) and sleeper, injectable for fake-clock tests.
        session: a `requests.Session` to use (tests may mount an adapter on it).
        on_event: `callback(event, info)`; events `request` {method, url, status, attempt,
            waited_s}, `throttled` {method, url, attempt, retry_after_s, wait_s}, `retry`
            {method, url, attempt, reason, wait_s}. `url` is path + query, redacted.

    Retries: 429 on every verb waits `Retry-After` (seconds or HTTP-date, §4) or else
    `gap + backoff`, never less than the pacing gap `window_s / requests_per_minute`; a 5xx,
    timeout or lost connection is retried for idempotent verbs only. For POST it raises
    `UncertainWriteError` at once, unless the connection provably failed before sending.

    Raises (from every request method):
        AuthError: 401/403, never retried.
        PermanentApiError: any other 4xx (`detail`, `violations` from §5.2), or a bad URL.
        UncertainWriteError: a POST got a 5xx or no answer; it may have been committed.
        TransientApiError: 429/5xx/connection failures outlived `max_attempts`, or
            `Retry-After` asks for more than `max(backoff_max_s, window_s)`.

    Attributes:
        requests_sent: HTTP requests actually sent (every attempt).
        sent_at: Unix times (seconds) of the last requests' answers (or failures: their slots
            count from then, as `_Window.answered`), as many as the window holds (none
            unpaced): what `target` keeps for the next run on this machine (`count_sent`).
        throttled: 429 answers received.
        retries: attempts repeated after a 429/5xx/connection failure.
        server_date: the server's clock (`Date` header, epoch seconds) at its last answer
            under 400; None before one or when it sent none.
        settled_before: a Unix time (seconds) before which every request sent to this
            server has been finished, as the server that got it is gone (the embedded sandbox
            of a process that ended; `target.open_target` sets it); None (a real API): a write
            an earlier run sent may still be in the server's hands (`apply.settle_seconds`).
    """

    def __init__(self, base_url: str, api_key: str, *, requests_per_minute: float | None = 20,
                 window_s: float = 60.0, timeout_s: float = 30.0, max_attempts: int = 5,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        if not api_key:
            raise AuthError("no API key given: set BULKCRM_API_KEY")
        self.base_url = base_url.rstrip("/")
        self.requests_per_minute, self.window_s = requests_per_minute, window_s
        self.timeout_s, self.max_attempts = timeout_s, max(1, max_attempts)
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._clock, self._on_event = clock, on_event
        self._session = session or requests.Session()
        self._session.headers.update({"X-API-KEY": api_key, "Accept": JSON_LD,
                                      "User-Agent": "bulkcrm"})
        self._window = _Window(requests_per_minute, window_s, clock, sleep)
        self._gap_s = window_s / requests_per_minute if requests_per_minute else 0.0
        self._rng = random.Random()
        self.requests_sent = self.throttled = self.retries = 0
        self.server_date: float | None = None  # the last answer's `Date` (epoch s; None: none sent)
        self.settled_before: float | None = None
        self._earlier: list[float] = []  # `count_sent`'s times not yet matched by `count_earlier`
        self._beat: _Heartbeat | None = None  # `progress`'s, while a long run of requests goes on
        self.sent_at: deque[float] = deque(maxlen=math.ceil(requests_per_minute) if requests_per_minute else 0)

    def __repr__(self) -> str:
        return redact(f"Client(base_url={self.base_url!r}, requests_per_minute="
                      f"{self.requests_per_minute}, window_s={self.window_s})", self._secrets())

    @contextmanager
    def progress(self, what: str, total: int | None, *, every_s: float = 60.0) -> Iterator[None]:
        """Log (INFO; the CLI shows it on stderr) every `every_s` seconds (of `clock`) while the
        block runs how many requests it has sent, of `total` expected (None: not known), with
        the time left at `requests_per_minute`: a planning scan of 100k records is 3,334
        requests ≈ 2.8 h at 20/min (crm-api.md §4), and nothing else shows meanwhile.
        Line: `matching: 40 of 3334 requests sent, ≈ 2.7 h left …`."""
        self._beat = _Heartbeat(what, total, self.requests_sent, self._clock() + every_s, every_s)
        try:
            yield
        finally:
            self._beat = None

    def _heartbeat(self) -> None:
        b = self._beat
        now = self._clock()
        if b is None or now < b.due:
            return
        b.due = now + b.every_s
        sent = self.requests_sent - b.start
        if b.total is None:
            log.info("%s: %s request%s sent …", b.what, sent, "" if sent == 1 else "s")
            return
        if not self.requests_per_minute:  # no pace to tell the time left by
            log.info("%s: %s of %s requests sent …", b.what, sent, b.total)
            return
        left = max(b.total - sent, 0) / self.requests_per_minute
        log.info("%s: %s of %s requests sent, ≈ %s left …", b.what, sent, b.total,
                 duration_text(round(left, 1)))

    def count_earlier(self, requests: int, at: float, *, exact: bool = False) -> None:
        """Count `requests` sent by an earlier process at Unix time `at` (seconds), e.g. a
        plan's lookups, in this client's window: the tenant's window still holds them
        (crm-api.md §4), so the first requests of this run wait for their slots instead of
        meeting a 429. Requests older than the window change nothing; a time ahead of this
        machine's clock (another machine's) counts as now. Requests `count_sent` counted
        already are left out: sent no later than `at` (a plan's stamp, the end of planning), or
        within a second of it when `exact` (a journal's write, stamped as it was sent)."""
        now = time.time()
        at = min(at, now)
        known = [t for t in self._earlier if (abs(t - at) <= 1.0 if exact else t <= at + 1.0)][:requests]
        for t in known:
            self._earlier.remove(t)
        requests -= len(known)
        if requests > 0 and self.requests_per_minute and now - at < self.window_s:
            self._window.count_earlier(requests, self._clock() - (now - at))

    def count_sent(self, times: Iterable[float]) -> None:
        """Count requests earlier runs on this machine sent at Unix `times` (seconds; the saved
        window of `target.load_window`), each at its own time. A later `count_earlier` (a plan's
        requests, a journal's writes: the same requests, if this machine sent them) leaves out
        as many of them as it finds sent no later than its time."""
        now = time.time()
        for t in sorted(times):
            if self.requests_per_minute and 0 <= now - t < self.window_s:
                self._window.count_earlier(1, self._clock() - (now - t))
                self._earlier.append(t)

    # -- public verbs ---------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict:
        """GET `path` and return its JSON body (`{}` when empty). List values in `params`
        become repeated `key[]=v` pairs (crm-api.md §7)."""
        body = self.request("GET", path, params=params).body
        return body if isinstance(body, dict) else {}

    def post(self, path: str, body: Mapping[str, Any], **kw: Any) -> Response:
        """Create: POST `body` as `application/ld+json` (crm-api.md §3); 201 expected. `kw`:
        `request`'s `before_send`."""
        return self.request("POST", path, body=body, content_type=JSON_LD, **kw)

    def put(self, path: str, body: Mapping[str, Any], **kw: Any) -> Response:
        """Replace: PUT `body` as `application/ld+json` (crm-api.md §3, §8 PUT semantics)."""
        return self.request("PUT", path, body=body, content_type=JSON_LD, **kw)

    def patch(self, path: str, body: Mapping[str, Any], **kw: Any) -> Response:
        """Update: PATCH a merge patch (RFC 7396) as `application/merge-patch+json` (§3)."""
        return self.request("PATCH", path, body=body, content_type=MERGE_PATCH, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        """DELETE `path`; 204 expected (crm-api.md §3)."""
        return self.request("DELETE", path, **kw)

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Yield each collection page (keys `member`, `totalItems`, `view`, crm-api.md §6),
        asking `itemsPerPage=30` unless given and following `view.next` until it is absent.
        Links are resolved against the base URL; a link to another host raises
        PermanentApiError (the key is never sent elsewhere)."""
        url: str | None = self._url(path, {"itemsPerPage": 30, **(params or {})})
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            page = self.request("GET", url).body
            page = page if isinstance(page, dict) else {}
            yield page
            nxt = (page.get("view") or {}).get("next")
            url = self._link(nxt) if nxt else None

    def list_all(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Return the `member` items of every page of a collection (⌈n/30⌉ requests). Under a
        `progress` of no known total (a forced scan) the first page's `totalItems` gives it."""
        out: list[dict] = []
        for page in self.iter_pages(path, params):
            members = page.get("member") or []
            b = self._beat
            if not out and b is not None and b.total is None and isinstance(page.get("totalItems"), int):
                b.total = self.requests_sent - b.start + math.ceil(max(page["totalItems"] - len(members), 0)
                                                                   / max(len(members), 1))
            out += members
        return out

    # -- the request loop -----------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Mapping[str, Any] | None = None, content_type: str | None = None,
                before_send: Callable[[], None] | None = None) -> Response:
        """Send one call with pacing and retries; see the class docstring for what it raises.
        `before_send` runs before each attempt, when it has its slot of the window and is about
        to leave (apply journals the write as sent then, not before a wait, and again before a
        retry: a resume gives the server time from the last attempt, which a 429 may have put
        a minute after the first)."""
        method = method.upper()
        url = self._url(path, params)
        rel = self._rel(url)
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": content_type} if content_type else {}
        attempts = throttled = 0
        while True:
            waited, slot = self._window.acquire(_say_first_wait if self.requests_sent == 0 else None)
            if before_send is not None:
                try:
                    before_send()
                except BaseException:
                    self._window.answered(slot)
                    raise
            attempts += 1
            self.requests_sent += 1
            try:
                try:
                    resp = self._session.request(method, url, data=data, headers=headers,
                                                 timeout=self.timeout_s)
                finally:  # answered or failed: its slot counts from now
                    self._window.answered(slot)
                    self.sent_at.append(time.time())
                    if self._beat is not None:
                        self._heartbeat()
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                self._tls_failed(exc, method, rel)
                self._transport_failed(exc, method, rel, attempts - throttled)
                continue
            except requests.RequestException as exc:
                raise PermanentApiError(self._hide(f"{method} {rel}: cannot send: {exc}"),
                                        method=method, url=rel) from None
            status = resp.status_code
            log.debug("%s %s -> %s (attempt %s)", method, rel, status, attempts)
            self._emit("request", method=method, url=rel, status=status, attempt=attempts,
                       waited_s=waited)
            if status < 400:
                self.server_date = _server_date(resp)
                parsed = _json(resp)
                return Response(status, parsed, resp.headers, _iri(parsed, resp), attempts,
                                throttled)
            if status == 429:
                throttled += 1
                self.throttled += 1
                self._throttled(resp, method, rel, attempts, throttled)
            elif status >= 500:
                self._server_error(resp, method, rel, attempts - throttled)
            else:
                raise self._client_error(resp, method, rel)
            self.retries += 1

    def _throttled(self, resp, method: str, rel: str, attempts: int, throttled: int) -> None:
        """Handle a 429: block the window for the wait, or raise when retrying is over."""
        ra = parse_retry_after(resp.headers.get("Retry-After"), _server_epoch(resp))
        wait = max(ra, self._gap_s) if ra is not None else self._gap_s + self._backoff(throttled)
        longest = max(self.backoff_max_s, self.window_s)
        too_long = ra is not None and ra > longest
        if not too_long:  # the server's window is full: no send of ours leaves before `wait`
            self._window.block_until(self._clock() + wait + self._window.margin)
        if too_long or throttled >= self.max_attempts:  # 429s have a budget of their own
            why = (f"Retry-After of {ra:g} s is longer than {longest:g} s" if too_long
                   else f"still throttled after {throttled} attempts")
            raise TransientApiError(f"{method} {rel}: rate limit (429): {why}; the tenant's 20 requests a "
                                    "minute are shared by all its keys (crm-api.md §4), so another "
                                    "integration may be using them: run again later, or lower --max-rate",
                                    status=429,
                                    method=method, url=rel, detail=self._hide(_detail(resp)),
                                    retry_after_s=ra)
        self._emit("throttled", method=method, url=rel, attempt=attempts, retry_after_s=ra,
                   wait_s=wait)

    def _server_error(self, resp, method: str, rel: str, attempts: int) -> None:
        """Handle a 5xx: retry idempotent verbs after backoff, else raise. `attempts`: this
        call's attempts that failed (429s not counted: they have their own budget)."""
        detail = self._hide(_detail(resp))
        ra = parse_retry_after(resp.headers.get("Retry-After"), _server_epoch(resp))
        kw = dict(status=resp.status_code, method=method, url=rel, detail=detail, retry_after_s=ra)
        if method not in IDEMPOTENT:
            raise UncertainWriteError(
                f"{method} {rel}: server error {resp.status_code} ({detail}); the write may have "
                "been committed: look the record up before sending it again", **kw)
        if attempts >= self.max_attempts:
            raise TransientApiError(f"{method} {rel}: server error {resp.status_code} after "
                                    f"{attempts} attempts: {detail}", **kw)
        self._retry_later(ra if ra is not None else self._backoff(attempts), method, rel,
                          attempts, f"{resp.status_code}")

    def _tls_failed(self, exc: Exception, method: str, rel: str) -> None:
        """Raise at once when the TLS handshake failed (`_handshake_failure`): no request left,
        and sending again meets the same certificate or the same plain-HTTP server."""
        why = _handshake_failure(exc)
        if why is None:
            return
        hint = ("the server does not speak HTTPS at that address (a local sandbox is http://)"
                if why == "WRONG_VERSION_NUMBER" else
                "its certificate is not trusted here (a company proxy's CA: point REQUESTS_CA_BUNDLE "
                "at its bundle)" if "CERTIFICATE" in why or why.endswith("UNKNOWN_CA") else "check the address")
        raise TransientApiError(f"{method} {rel}: the TLS handshake with {self.base_url} failed ({why}): {hint}; "
                                "nothing was sent", method=method, url=rel, detail=why) from None

    def _transport_failed(self, exc: Exception, method: str, rel: str, attempts: int) -> None:
        """Handle a timeout/connection failure: retry if safe, else raise."""
        name = type(exc).__name__
        sent = not _never_sent(exc)
        log.debug("%s %s -> no answer: %s (attempt %s)", method, rel, name, attempts)  # a line per request
        if sent and method not in IDEMPOTENT:
            raise UncertainWriteError(
                f"{method} {rel}: no answer ({name}); the write may have been committed: look "
                "the record up before sending it again", method=method, url=rel,
                detail=name) from exc
        if attempts >= self.max_attempts:
            hint = (f"; is the server at {self.base_url} running, and the address right?"
                    if not sent else "")  # refused or unresolved: nothing reached a server
            raise TransientApiError(f"{method} {rel}: no answer from {self.base_url} after {attempts} "
                                    f"attempts ({name}){hint}", method=method, url=rel, detail=name) from exc
        self._retry_later(self._backoff(attempts), method, rel, attempts, name)
        self.retries += 1

    def _retry_later(self, wait: float, method: str, rel: str, attempt: int, reason: str) -> None:
        self._window.block_until(self._clock() + wait)
        self._emit("retry", method=method, url=rel, attempt=attempt, reason=reason, wait_s=wait)

    def _client_error(self, resp, method: str, rel: str) -> ApiError:
        """Map a 4xx (not 429) to AuthError (401/403) or PermanentApiError (crm-api.md §5)."""
        status, detail = resp.status_code, self._hide(_detail(resp))
        body = _json(resp)
        violations = body.get("violations") if isinstance(body, dict) else None
        kw = dict(status=status, method=method, url=rel, detail=detail)
        if status in (401, 403):
            return AuthError(f"the API key was rejected ({status}): check --api-key / BULKCRM_API_KEY "
                             f"({method} {rel}: {detail})", **kw)
        violations = violations if isinstance(violations, list) else []
        hint = ""
        base_path = urlsplit(self.base_url).path
        if status == 404 and urlsplit(rel).path == f"{base_path}/organizations":  # the API always has
            # it (crm-api.md §8.3): the base URL points elsewhere (a path too many, a typo)
            hint = (f"; the API always has /organizations, so check the base URL {self.base_url} "
                    "(the collections are at its root: https://api.rogerroger.io/organizations)")
        return PermanentApiError(f"{method} {rel} failed ({status}): {detail}{hint}",
                                 violations=violations, **kw)

    # -- helpers --------------------------------------------------------------------------
    def _backoff(self, n: int) -> float:
        """Exponential backoff with jitter for the n-th failure (seconds, ≤ backoff_max_s)."""
        raw = self.backoff_base_s * 2 ** (n - 1) + self._rng.uniform(0, self.backoff_base_s)
        return min(self.backoff_max_s, raw)

    def _url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """Absolute URL for an API path (`/organizations`, appended to the base URL) or an
        absolute URL on the base URL's host, plus the encoded `params`."""
        if path.startswith(("http://", "https://")):
            url = self._link(path)
        else:
            url = f"{self.base_url}/{path.lstrip('/')}"
        query = _query(params)
        return f"{url}{'&' if '?' in url else '?'}{query}" if query else url

    def _link(self, href: str) -> str:
        """Resolve a server link (`view.next`, root-relative) against the base URL (RFC 3986
        §5.2); refuse other hosts so the key never leaves for them."""
        url = urljoin(self.base_url + "/", href)
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise PermanentApiError(self._hide(f"refusing to send the API key to {url}"),
                                    url=self._hide(url))
        return url

    def _rel(self, url: str) -> str:
        """Path + query of `url` (base URL stripped), redacted: what errors and events show."""
        parts = urlsplit(url)
        return self._hide(parts.path + (f"?{parts.query}" if parts.query else ""))

    def _secrets(self) -> list[str]:
        return [str(self._session.headers.get("X-API-KEY") or "")]

    def _hide(self, text: str) -> str:
        return redact(text, self._secrets())

    def _emit(self, event: str, **info: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, info)


@dataclass
class _Heartbeat:
    """`Client.progress`'s state: what is running, requests expected (None: not known), the
    count of requests sent when it began, the clock time of the next line and the seconds
    between lines."""
    what: str
    total: int | None
    start: int
    due: float
    every_s: float


def _query(params: Mapping[str, Any] | None) -> str:
    """Encode params; a list value becomes repeated `key[]=v` pairs (API Platform, §7)."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if isinstance(value, (list, tuple, set, frozenset)):
            key = key if key.endswith("[]") else f"{key}[]"
            pairs += [(key, _text(v)) for v in value if v is not None]
        elif value is not None:
            pairs.append((key, _text(value)))
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _json(resp: requests.Response) -> Any:
    """Parse a body leniently: None for empty or non-JSON content."""
    if not resp.content:
        return None
    try:
        return json.loads(resp.content.decode("utf-8", errors="replace"))
    except ValueError:
        return None


def _detail(resp: requests.Response) -> str:
    """Error text: first of `detail`, `description`, `hydra:description`, `message`, `title`
    (crm-api.md §5.2); else the start of a non-JSON body; else the reason phrase."""
    body = _json(resp)
    if isinstance(body, dict):
        for key in DETAIL_KEYS:
            if body.get(key):
                return str(body[key])
    text = resp.content.decode("utf-8", errors="replace").strip() if resp.content else ""
    return text[:200] or resp.reason or f"HTTP {resp.status_code}"


def _iri(body: Any, resp: requests.Response) -> str | None:
    """The record's IRI: body `@id`, else the path of the `Location` header (§3)."""
    if isinstance(body, dict) and isinstance(body.get("@id"), str):
        return body["@id"]
    location = resp.headers.get("Location")
    return urlsplit(location).path or None if location else None


def _server_epoch(resp: requests.Response) -> float:
    """The server's 'now' (its `Date` header, RFC 9110 §6.6.1) for HTTP-date Retry-After,
    so client clock skew does not matter; the local wall clock when absent."""
    date = _server_date(resp)
    return time.time() if date is None else date


def _server_date(resp: requests.Response) -> float | None:
    """The `Date` header (RFC 9110 §6.6.1) as epoch seconds; None when absent or unreadable."""
    try:
        return parsedate_to_datetime(resp.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return None


_HANDSHAKE = frozenset({"WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED", "UNSUPPORTED_PROTOCOL",
                        "TLSV1_ALERT_PROTOCOL_VERSION", "SSLV3_ALERT_HANDSHAKE_FAILURE",
                        "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_UNRECOGNIZED_NAME"})
"""OpenSSL reasons of a TLS handshake that failed for good (a plain-HTTP server, an untrusted
or wrong-host certificate, no common protocol): raised before any byte of the request left."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it wraps (requests -> urllib3 -> ssl/socket): causes, contexts,
    `reason` and exception `args`, each once."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [a for a in (getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ()))
                  if isinstance(a, BaseException)]  # `reason` may be text (ssl.SSLError's)


def _handshake_failure(exc: BaseException) -> str | None:
    """The OpenSSL reason (`CERTIFICATE_VERIFY_FAILED`, `WRONG_VERSION_NUMBER`, ...) when `exc`
    is a TLS handshake that failed for good (`_HANDSHAKE`), else None (a TLS error mid-answer is
    a transport failure like any other)."""
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return "CERTIFICATE_VERIFY_FAILED"
        if isinstance(e, ssl.SSLError) and getattr(e, "reason", None) in _HANDSHAKE:
            return e.reason
    return None


def _never_sent(exc: BaseException) -> bool:
    """True when the failure provably happened before the request left (connect refused,
    DNS, connect timeout), so even a POST may be sent again."""
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    return any(isinstance(e, NewConnectionError) for e in _chain(exc))
