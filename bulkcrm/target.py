"""Where a run writes: a real account (base URL + key) or the embedded sandbox.

With no API key (neither `--api-key` nor `BULKCRM_API_KEY`) bulkcrm starts the sandbox
in-process on 127.0.0.1 with its state in a SQLite file in the working directory, so a second
run sees the first. The embedded sandbox has no rate limit, so the client does not pace. A new
embedded database starts with the note categories `DEFAULT_NOTE_CATEGORIES`.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .client import Client, secret_forms
from .errors import ConfigError

DEFAULT_BASE_URL = "https://api.rogerroger.io"
"""crm-api.md §1."""
EMBEDDED_KEY = "embedded-sandbox-key"
"""The embedded sandbox's own key: local only, never a real account's."""
EMBEDDED_PREFIX = "embedded-sandbox:"
"""Target label of the embedded sandbox: the prefix, then the absolute path of its SQLite file."""
DEFAULT_NOTE_CATEGORIES = ("Call", "Meeting", "E-mail", "Note")
"""Note categories a new embedded sandbox starts with, so note templates can look categories
up by name (a note needs a category, crm-api.md §9.1; `/note_categories` is [SANDBOX] §10.4)."""


@dataclass
class Target:
    """An open target.

    Attributes:
        client: the API client. label: what plans record as their target (a base URL, or
        `embedded-sandbox:<db path>`; never a key). sandbox: the embedded Sandbox or None.
        empty: the embedded sandbox holds no record yet (its file was created by this run, or
            an earlier run was refused or wrote nothing).
    """

    client: Client
    label: str
    sandbox: object | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    empty: bool = False
    scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    """A read-only run's stand-in for an embedded sandbox that does not exist (none is made)."""

    def describe(self) -> str:
        """One line for the top of the output."""
        if self.scratch is not None:
            return (f"Target: no embedded sandbox here yet ({self.label.split(':', 1)[1]} does not exist), "
                    "because no API key is set (BULKCRM_API_KEY): this run reads an empty one and creates "
                    "none (an import made from another folder is in that folder's .bulkcrm).")
        if self.sandbox is not None:
            what = "a new, empty embedded sandbox" if self.empty else "embedded sandbox"
            return (f"Target: {what} ({self.label.split(':', 1)[1]}), "
                    "because no API key is set (BULKCRM_API_KEY).")
        rate = self.client.requests_per_minute
        return f"Target: {self.label} ({rate:g} requests/min)" if rate else f"Target: {self.label}"

    def close(self) -> None:
        if self.sandbox is None and self.scratch is None:  # a real account: its window goes on
            save_window(self.client, self.label)
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox.store.close()
            self.sandbox = None
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None


EMBEDDED_DB = Path(".bulkcrm") / "sandbox.sqlite"
"""The embedded sandbox's SQLite file, relative to the working directory."""


def open_target(base_url: str | None, api_key: str | None, *, max_rate: float | None = None,
                embedded_db: str | Path = EMBEDDED_DB, read_only: bool = False) -> Target:
    """Open the target named by the options, or the embedded sandbox when no key is set.

    Args:
        base_url: API base URL; default https://api.rogerroger.io when a key is set.
        api_key: the key (X-API-KEY, crm-api.md §2) or None.
        max_rate: requests per minute for this run (default 20: the tenant limit, §4).
        embedded_db: SQLite file of the embedded sandbox.
        read_only: the run writes nothing (plan, dry run, export): an embedded sandbox that
            does not exist is not created; the run reads an empty one in a temporary folder.

    Raises:
        ConfigError: a base URL without a key, not https:// (http:// only for a loopback host
            such as a local `bulkcrm sandbox`: the key travels in a header), or with a user or
            password in it; a key with a character an HTTP header cannot carry; an embedded
            sandbox file that is not a SQLite database; a `BULKCRM_TIMEOUT` that is not a
            number of seconds above 0.
    """
    base_url = (base_url or "").strip() or None
    api_key = _checked_key(api_key)
    if base_url and api_key and any(form.casefold() in url.casefold() for form in secret_forms([api_key])
                                    for url in (base_url, unquote(base_url))):  # `%53ecret` too
        # anywhere (a host too: a pasted `https://api.rogerroger.io<key>`): the label goes into
        # plans, journals, messages and the first line of output, the host to a DNS resolver
        raise ConfigError("the base URL (--base-url or BULKCRM_BASE_URL) holds the API key; give the "
                          "key with --api-key or BULKCRM_API_KEY only, and the base URL without it")
    if base_url:
        _check_base_url(base_url)
        scheme, rest = base_url.split("://", 1)
        base_url = f"{scheme.lower()}://{rest}"  # `HTTP://…` is http:// (RFC 3986 §3.1)
    timeout_s = _timeout()
    if api_key:
        client = Client(base_url or DEFAULT_BASE_URL, api_key, requests_per_minute=max_rate or 20,
                        timeout_s=timeout_s)
        load_window(client, client.base_url)
        return Target(client=client, label=client.base_url, secrets=(api_key,))
    if base_url:
        raise ConfigError(f"the base URL {base_url} (--base-url or BULKCRM_BASE_URL) needs an API "
                          "key: pass --api-key or set BULKCRM_API_KEY")
    from .sandbox import Sandbox
    from .sandbox.server import seed_default_categories
    db = Path(embedded_db).resolve()
    new = not db.exists() or db.stat().st_size == 0
    scratch = tempfile.TemporaryDirectory(prefix="bulkcrm-") if new and read_only else None
    path = Path(scratch.name) / db.name if scratch else db
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {EMBEDDED_KEY: "embedded"}  # key -> tenant
    try:
        sandbox = Sandbox(db_path=str(path), api_keys=keys, rate_limit=None).start()
    except ValueError as e:  # the file is not a SQLite database (or cannot be opened)
        raise ConfigError(f"the embedded sandbox: {e}; move the file away to start a new, empty one") from None
    if new:
        seed_default_categories(sandbox, keys.values())
    client = Client(sandbox.url, EMBEDDED_KEY, requests_per_minute=max_rate, timeout_s=timeout_s)
    client.settled_before = time.time()  # an earlier run's server ran in that run's process: it is gone
    # a file that holds no record yet (an earlier run was refused, or its rows were all invalid)
    # is said to be new and empty too: what matters to the user is that nothing is in it
    empty = new or sandbox.store.record_count(besides=("note_categories",)) == 0
    return Target(client=client, label=f"{EMBEDDED_PREFIX}{db.as_posix()}", sandbox=sandbox, empty=empty,
                  scratch=scratch)


TIMEOUT_ENV = "BULKCRM_TIMEOUT"
"""Environment variable: seconds a request waits for its answer (`Client.timeout_s`, default
30). A create whose answer did not come is looked up only after two of them have passed
(`apply.SETTLE_TIMEOUTS`)."""


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return 30.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r}: give the seconds a request waits for its answer, "
                          "above 0 and below 3600 (default 30)")
    return value


def window_file(label: str) -> Path:
    """Where the request times of target `label` are kept between runs: the user's cache
    folder (`platformdirs`, beside the locks), one small JSON file per target, named by a hash
    of the target (`journal.target_digest`: never a key)."""
    from .journal import lock_dir, target_digest
    return lock_dir().parent / "window" / f"{target_digest(label)}.json"


def load_window(client: Client, label: str) -> None:
    """Count the requests earlier runs on this machine sent to `label` within the window
    (`Client.count_earlier`): the tenant's window still holds them (crm-api.md §4), so a run
    started right after another one (an import re-run after fixing rows, `apply` after
    `apply --limit`) waits for its slots instead of meeting a 429. A missing or unreadable
    file counts nothing."""
    client.count_sent(_saved_times(window_file(label)))


def save_window(client: Client, label: str) -> None:
    """Keep the times of the requests still in the window (this run's, `Client.sent_at`, and
    the earlier runs' ones), at most as many as the window holds, for the next run
    (`load_window`). Best
    effort: a file that cannot be written is left alone (the next run may meet one 429, which
    the client waits out)."""
    if not client.requests_per_minute:
        return
    path, now = window_file(label), time.time()
    kept = sorted(t for t in {*_saved_times(path), *client.sent_at} if now - t < client.window_s)
    kept = kept[-client.sent_at.maxlen:] if client.sent_at.maxlen else []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sent": kept}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _saved_times(path: Path) -> list[float]:
    try:
        sent = json.loads(path.read_text(encoding="utf-8")).get("sent", [])
        return [float(t) for t in sent if isinstance(t, (int, float))]
    except (OSError, ValueError, AttributeError):
        return []


def _checked_key(api_key: str | None) -> str | None:
    """The key without the spaces and line breaks a paste or a file adds around it. A key is
    sent as a header value (X-API-KEY, crm-api.md §2): any other character than visible ASCII
    (a typographic quote “, a space inside) is refused, naming its position, never the key."""
    key = (api_key or "").strip() or None
    if api_key is not None and key is None:  # a secret that arrived empty: not "use the sandbox"
        raise ConfigError("the API key (--api-key or BULKCRM_API_KEY) is empty; give the key, or leave "
                          "both unset to use the embedded sandbox")
    if key and len(key) > 1 and key[0] == key[-1] and key[0] in "\"'":
        raise ConfigError("the API key (--api-key or BULKCRM_API_KEY) is wrapped in quotes; give "
                          "it without them")
    bad = next((i for i, ch in enumerate(key or "") if not "!" <= ch <= "~"), None)
    if bad is not None:
        ch = key[bad]
        what = ("a line break" if ch in "\r\n" else "a tab" if ch == "\t" else "a space" if ch.isspace()
                else f"{ch!r} (U+{ord(ch):04X})")
        raise ConfigError(f"the API key (--api-key or BULKCRM_API_KEY) holds {what} at position "
                          f"{bad + 1} of {len(key)}; an API key is letters, digits and ASCII signs: "
                          "check it for pasted quotes or spaces")
    return key


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (RFC 6761 §6.3): the addresses the sandbox may serve on
    (`sandbox.server.check_loopback`); `host` as `urlsplit` gives it (lower case), a
    trailing dot allowed."""
    from .sandbox.server import check_loopback
    try:
        check_loopback(host.rstrip("."))
    except ValueError:
        return False
    return True


def _check_base_url(base_url: str) -> None:
    """Refuse a base URL the key must not be sent to (see `open_target`). A value that is not
    an http(s) URL is never echoed: it may be a key put in the wrong variable."""
    option = "the base URL (--base-url or BULKCRM_BASE_URL)"
    try:
        url = urlsplit(base_url)
        host = url.hostname or ""
    except ValueError:
        raise ConfigError(f"{option} is not a URL; use e.g. https://api.rogerroger.io") from None
    if url.scheme.lower() in ("http", "https") and not host:
        raise ConfigError(f"{option} has no host after {url.scheme}://; use e.g. https://api.rogerroger.io "
                          "(or http://127.0.0.1:8000 for a local `bulkcrm sandbox`)")
    if url.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"{option} must start with https://, e.g. https://api.rogerroger.io "
                          "(or http:// for a local `bulkcrm sandbox`: http://127.0.0.1:8000)")
    try:
        url.port
    except ValueError:
        raise ConfigError(f"{option} has a port that is not a number from 0 to 65535; use e.g. "
                          "https://api.rogerroger.io (or http://127.0.0.1:8000 for a local `bulkcrm sandbox`)") from None
    if url.username is not None or url.password is not None:
        raise ConfigError(f"{option} holds a user or password before '@'; give the key with "
                          "--api-key or BULKCRM_API_KEY instead")
    if url.query or url.fragment or base_url.rstrip().endswith(("?", "#")):
        raise ConfigError(f"{option} has a query (?…) or a fragment (#…), which the API's paths cannot "
                          "follow; use the URL up to its host (and path), e.g. https://api.rogerroger.io")
    where = f"the base URL {base_url!r} (--base-url or BULKCRM_BASE_URL)"
    if url.scheme.lower() == "http" and not _is_loopback(host):
        raise ConfigError(f"{where} must use https://: over http:// the API key would cross the "
                          "network unencrypted (http:// is accepted for loopback only: 127.x.x.x, "
                          "::1, localhost, e.g. a local `bulkcrm sandbox`)")


def embedded_db_of(label: str) -> Path | None:
    """The SQLite file of a plan made against the embedded sandbox (None for a real target), so
    `bulkcrm apply` works on the same sandbox from any working directory."""
    return Path(label[len(EMBEDDED_PREFIX):]) if label.startswith(EMBEDDED_PREFIX) else None
