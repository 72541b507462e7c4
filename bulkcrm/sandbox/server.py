"""The sandbox HTTP server: `Sandbox` (a thread on 127.0.0.1) and `run()` behind `bulkcrm sandbox`.

Stage: sandbox. Input: HTTP requests on a loopback address. Output: the RogerRoger CRM API as
crm-api.md describes it, plus an optional test-only control interface under `/_sandbox/`.

Example::

    >>> with Sandbox(api_keys={"k1": "tenant-a"}, rate_limit=None) as sb:
    ...     requests.get(sb.url + "/organizations", headers={"X-API-KEY": "k1"}).status_code
    200
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from ..client import redact  # keys of 8+ characters, in every form they take
from .app import App
from .runtime import Faults, Gateway, LoggedRequest, RateLimiter
from .seeding import load_seed_file, seed_records
from .store import Store
from .wire import HttpError, Request, Response, json_response, problem

DEFAULT_PORT = 8000
"""Port `run()` listens on unless told otherwise."""
DEFAULT_RATE_LIMIT = (20, 60.0)
"""(requests, window seconds) per tenant, as the real API (crm-api.md §4)."""


def check_loopback(host: str) -> str:
    """Return the address to bind for `host`. Raises ValueError unless it is a loopback
    address (127.0.0.0/8, ::1) or `localhost`: the sandbox must never be reachable from
    other machines."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"refusing to serve the sandbox on {host!r}: only loopback addresses "
                     "(127.0.0.0/8, ::1, localhost) are allowed")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: "Sandbox"):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive client connections, so nothing is served after `stop()`."""
        with self._open_lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished (reset, broken pipe, timeout) is normal; report the rest."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "rogerroger-sandbox"

    def version_string(self) -> str:
        return self.server_version
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:   # no access log (keys in URLs)
        pass

    def _serve(self) -> None:
        body = self._body()
        if body is None:                          # the client went away mid-body: write nothing
            self.close_connection = True
            return
        url = urlsplit(self.path)
        req = Request(self.command, url.path, url.query,
                      {k.lower(): v for k, v in self.headers.items()}, body)
        resp = self.server.sandbox._handle(req)
        if resp.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(resp.status)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    return None
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    return None
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunk = self.rfile.read(size + 2)
                if len(chunk) < size + 2:
                    return None
                chunks.append(chunk[:size])
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        body = self.rfile.read(length) if length > 0 else b""
        return body if len(body) == length or length < 0 else None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class Sandbox:
    """A local emulator of the RogerRoger CRM API (crm-api.md), served on a loopback address.

    Args:
        db_path: None for in-memory SQLite; a file path for a persistent store (WAL).
        api_keys: key -> tenant; several keys may share a tenant (and its rate window).
        rate_limit: (requests, window seconds) per tenant, sliding; None = off.
        host: loopback address to bind (ValueError otherwise). port: 0 = ephemeral.
        latency_ms: delay added to every API answer (milliseconds).
        control: enable the test-only control interface under `/_sandbox/`.
        seed: initial data: a seed dict (see `seed`) or a JSON/YAML seed file path.
        faults: initial `Faults`.
        on_request: called with each `LoggedRequest` as it is logged (`bulkcrm sandbox --log`),
            or None.
    Raises:
        ValueError: non-loopback host, bad rate limit, bad seed.
    """

    def __init__(self, db_path: str | Path | None = None, api_keys: Mapping[str, str] | None = None,
                 rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
                 host: str = "127.0.0.1", port: int = 0, latency_ms: int = 0,
                 control: bool = False, seed: dict | str | Path | None = None,
                 faults: Faults | None = None,
                 on_request: Callable[[LoggedRequest], None] | None = None):
        self.host, self._bind = host, check_loopback(host)
        self.port, self.control = port, control
        self.api_keys = dict(api_keys or {})
        self.store = Store(db_path)
        self._limiter = RateLimiter(*(rate_limit or (None,)))
        self._gateway = Gateway(App(self.store), self.api_keys, self._limiter, latency_ms)
        self._gateway.on_request = on_request
        if faults:
            self._gateway.set_faults(faults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if isinstance(seed, dict):
            self.seed(seed)
        elif seed is not None:
            self.load_seed_file(seed)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Sandbox":
        """Serve in a daemon thread; returns self. `url` is valid afterwards."""
        if self._server is None:
            self._server = _Server((self._bind, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"sandbox:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the store stays readable through `store`)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (IPv6 in brackets)."""
        host = f"[{self._bind}]" if ":" in self._bind else self._bind
        return f"http://{host}:{self.port}"

    @property
    def default_tenant(self) -> str:
        """Tenant of the first API key ("default" when there is none)."""
        return next(iter(self.api_keys.values()), "default")

    # -- data, log, limits, faults -------------------------------------------------------------

    def reset(self) -> None:
        """Clear all data, the request log, faults and rate windows (keys and limits stay)."""
        self.store.clear()
        self.clear_log()
        self.clear_faults()
        self._limiter.clear()

    def seed(self, data: dict, tenant: str | None = None) -> dict[str, int]:
        """Load records straight into the store (no request logged or counted).

        Args:
            data: {users, tags, segments, note_categories, organizations, notes, people: [item]},
                items in API shape; `@id` or `id` fixes the id; notes need `organization`
                (IRI or id) unless their `@id` is a note IRI.
            tenant: owner of the records (default: the first key's tenant).
        Returns: records seeded per collection.
        Raises: ValueError for unknown keys or a note without organization.
        """
        return seed_records(self.store, data, tenant or self.default_tenant)

    def load_seed_file(self, path: str | Path, tenant: str | None = None) -> dict[str, int]:
        """`seed()` from a JSON or YAML file with the same keys."""
        return self.seed(load_seed_file(path), tenant)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every API request so far (control requests excluded), oldest first."""
        return self._gateway.entries()

    def clear_log(self) -> None:
        self._gateway.clear_log()

    def set_rate_limit(self, limit: int | None, window_s: float = 60.0) -> None:
        """Per-tenant sliding window of `limit` requests per `window_s` seconds; None = off."""
        self._limiter.configure(limit, window_s)

    @property
    def faults(self) -> Faults:
        """Current faults (`burst_429` shows the 429s still to come)."""
        return self._gateway.faults

    def set_faults(self, faults: Faults | None = None, **kw: Any) -> None:
        """Replace the faults: `set_faults(error_rate=0.5, seed=7)` or `set_faults(Faults(...))`."""
        self._gateway.set_faults(faults or Faults(**kw))

    def clear_faults(self) -> None:
        self._gateway.set_faults(Faults())

    # -- requests ----------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        if req.path == "/_sandbox" or req.path.startswith("/_sandbox/"):
            if not self.control:
                return problem(HttpError(404))
            try:
                return self._control(req)
            except (ValueError, TypeError, KeyError) as exc:
                return json_response(400, {"error": str(exc)}, "application/json")
        return self._gateway.handle(req)

    def _control(self, req: Request) -> Response:
        """Test-only interface: reset, seed, request log, faults, rate limit, state."""
        route, method = req.path[len("/_sandbox/"):].strip("/"), req.method
        args = {k: v[-1] for k, v in parse_qs(req.query).items()}
        body = json.loads(req.body or b"null") if method in ("POST", "PUT") else None
        if (route, method) == ("reset", "POST"):
            self.reset()
        elif (route, method) == ("seed", "POST"):
            return _ok({"seeded": self.seed(body or {}, args.get("tenant"))})
        elif (route, method) == ("requests", "GET"):
            return _ok([vars(r) for r in self.requests])
        elif (route, method) == ("requests", "DELETE"):
            self.clear_log()
        elif route == "faults" and method in ("GET", "PUT"):
            if method == "PUT":
                self.set_faults(Faults.from_dict(body or {}))
            return _ok(self.faults.to_dict())
        elif (route, method) == ("rate-limit", "PUT"):
            self.set_rate_limit(*((body["limit"], body.get("window_s", 60.0)) if body else (None,)))
        elif route.startswith("state/") and method == "GET":
            return _ok(self.store.all(route[len("state/"):], args.get("tenant")))
        else:
            return json_response(404, {"error": f"no control route {method} /_sandbox/{route}"},
                                 "application/json")
        return Response(204)


def _ok(doc: Any) -> Response:
    return json_response(200, doc, "application/json")


def parse_rate_limit(text: str) -> tuple[int, float] | None:
    """`"20/60"` -> (20, 60.0); `"off"` -> None. Raises ValueError otherwise."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    limit, _, window = text.partition("/")
    value = (int(limit), float(window or 60))
    if value[0] < 1 or value[1] <= 0:
        raise ValueError(f"rate limit {text!r}: expected N/SECONDS, e.g. 20/60, or off")
    return value


def access_line(e: LoggedRequest) -> str:
    """`14:05:09 GET /organizations?itemsPerPage=30 -> 200 (tenant default)`: one API request
    of `bulkcrm sandbox --log` (a 429 shows there as the server's throttling)."""
    query = f"?{e.query}" if e.query else ""
    who = f"tenant {e.tenant}" if e.tenant else "key refused"
    end = "; answer dropped" if e.dropped else ""
    return f"{time.strftime('%H:%M:%S', time.localtime(e.time))} {e.method} {e.path}{query} -> {e.status} ({who}{end})"


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT, db_path: str | Path | None = None,
        api_keys: Mapping[str, str] | Iterable[str] = (), tenant: str = "default",
        rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT, latency_ms: int = 0,
        seed_file: str | Path | None = None, control: bool = False, error_rate: float = 0.0,
        drop_rate: float = 0.0, fault_seed: int | None = None, out: TextIO | None = None,
        burst_429: int = 0, retry_after_http_date: bool = False, access_log: TextIO | None = None) -> None:
    """Serve the sandbox until Ctrl-C (what `bulkcrm sandbox` runs).

    Prints one line, `Sandbox listening on http://127.0.0.1:PORT (20 requests / 60 s per tenant;
    1 API key(s), 1 tenant(s); in memory; Ctrl-C stops it)`, and never a key.

    Args:
        host: loopback address only (127.0.0.0/8, ::1, localhost). port: 0 = ephemeral.
        db_path: SQLite file (persistent, WAL) or None for in-memory.
        api_keys: key -> tenant mapping, or keys that all belong to `tenant`.
        rate_limit: (requests, window seconds) or None; see `parse_rate_limit`.
        latency_ms: delay per answer (ms). seed_file: JSON/YAML seed loaded at start.
        control: enable `/_sandbox/` (tests only). error_rate / drop_rate / fault_seed /
            burst_429 / retry_after_http_date: the `Faults` fields of the same names (seed).
        out: where the line goes (stdout).
        access_log: where a line per API request goes (`access_line`: time, method, path and
            query, status, tenant; never a key, which travels in a header), or None.
    Raises:
        ValueError: non-loopback host, no API key, bad rate limit or seed.
    """
    keys = dict(api_keys) if isinstance(api_keys, Mapping) else {k: tenant for k in api_keys}
    if not keys:
        raise ValueError("the sandbox needs at least one API key (--api-key)")
    faults = Faults(error_rate=error_rate, drop_rate=drop_rate, seed=fault_seed, burst_429=burst_429,
                    retry_after_http_date=retry_after_http_date)
    new = db_path is None or not Path(db_path).exists() or Path(db_path).stat().st_size == 0
    secrets = list(keys)  # a key a client put in a URL's path or query is masked too
    watch = (lambda e: print(redact(access_line(e), secrets), file=access_log, flush=True)) \
        if access_log is not None else None
    sandbox = Sandbox(db_path, keys, rate_limit, host, port, latency_ms, control, seed_file, faults,
                      on_request=watch)
    if new:  # as the embedded sandbox: a new database only (a user may delete them later)
        seed_default_categories(sandbox, set(keys.values()))
    sandbox.start()
    limit = f"{rate_limit[0]} requests / {rate_limit[1]:g} s per tenant" if rate_limit else "no rate limit"
    tenants = len(set(keys.values()))
    print(f"Sandbox listening on {sandbox.url} ({limit}; {len(keys)} API key(s), {tenants} tenant(s); "
          f"{'SQLite ' + str(db_path) if db_path else 'in memory'}; Ctrl-C stops it)",
          file=out or sys.stdout, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        sandbox.store.close()


def seed_default_categories(sandbox: Sandbox, tenants: Iterable[str]) -> None:
    """Give each tenant of a new database without note categories (none in the seed file)
    the default ones (`target.DEFAULT_NOTE_CATEGORIES`: Call, Meeting, E-mail, Note), so note
    templates can look categories up by name (a note needs a category, crm-api.md §9.1).
    `bulkcrm sandbox` and the embedded sandbox both start a new database this way."""
    from ..target import DEFAULT_NOTE_CATEGORIES
    for tenant in sorted(tenants):
        if not sandbox.store.all("note_categories", tenant=tenant):
            sandbox.seed({"note_categories": [{"id": default_category_id(tenant, t), "title": t}
                                              for t in DEFAULT_NOTE_CATEGORIES]}, tenant)


def default_category_id(tenant: str, title: str) -> str:
    """The id of default note category `title` of `tenant`: a UUID of both (uuid5), the same in
    every new database, so a plan made against the empty embedded sandbox that `plan` starts
    and drops (it creates no file) names the categories the one `apply` then creates."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bulkcrm-sandbox:{tenant}:note_categories:{title}"))


def main(argv: list[str] | None = None) -> None:
    """`python -m bulkcrm.sandbox.server`: the same options as `bulkcrm sandbox`; keys also
    from `BULKCRM_SANDBOX_KEYS` (comma-separated) so they stay out of the process list."""
    p = argparse.ArgumentParser(prog="python -m bulkcrm.sandbox.server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--db")
    p.add_argument("--api-key", action="append", default=[])
    p.add_argument("--tenant", default="default")
    p.add_argument("--rate-limit", default="20/60", type=parse_rate_limit)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--seed")
    p.add_argument("--control", action="store_true")
    a = p.parse_args(argv)
    keys = a.api_key + [k for k in os.environ.get("BULKCRM_SANDBOX_KEYS", "").split(",") if k]
    run(a.host, a.port, a.db, keys, a.tenant, a.rate_limit, a.latency_ms, a.seed, a.control,
        a.error_rate, a.drop_rate)


if __name__ == "__main__":
    main()
