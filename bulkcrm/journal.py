"""The apply journal: an append-only JSONL file beside the plan, fsynced after every line.

Each operation moves sent → done (with the IRI and status) or failed (status, problem detail),
or drifted; each state change replaces the operation's entry. A crash leaves at most one
operation in `sent`, and a create whose POST got no answer stays `sent` too (`detail`: "no
answer"); the next apply resolves each by a lookup before anything is resent, and a create it
does not find goes back to `pending`, to be sent (issue 6). The first line binds the journal to
one plan.

Line shapes::

    {"journal": 1, "plan_sha256": "…", "target": "http://127.0.0.1:8000", "planned_at": "2026-…Z"}
    {"key": "row:12", "state": "sent", "t": 1764487200.1}
    {"key": "row:12", "state": "done", "iri": "/organizations/…", "status": 201, "t": …}
    {"key": "row:13", "state": "failed", "status": 422, "detail": "title: This value should not be blank.", "t": …}
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from filelock import FileLock, Timeout

from .errors import BusyError, JournalError

class Journal:
    """Append-only, fsynced JSONL journal of one plan's operations.

    Args:
        path: the journal file (default: `<plan>.journal.jsonl`).
        plan_sha256: hash of the plan's operations; a journal of another plan is refused.
        target: base URL the plan writes to (never a key).
        planned_at: when the plan was made (`Plan.created_at`): a journal of another planning
            run with the same operations (the same sheet planned again, e.g. after the CRM was
            restored) is refused too; its "done" would not be this plan's. Journals written
            without it are accepted.

    Raises:
        JournalError: the file belongs to another plan or a line cannot be parsed (a torn last
            line from a crash is cut off, not an error: the state change it was writing had not
            happened yet).
    """

    def __init__(self, path: str | Path, plan_sha256: str, target: str, planned_at: str | None = None):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._iris: dict[str, str] = {}  # key -> IRI of every operation done
        if self.path.exists() and self.path.stat().st_size:
            self._load(plan_sha256, planned_at)
        else:
            self._append({"journal": 1, "plan_sha256": plan_sha256, "target": target,
                          **({"planned_at": planned_at} if planned_at else {})})

    def _load(self, plan_sha256: str, planned_at: str | None = None) -> None:
        # split on LF bytes only: a value may hold U+2028 or U+0085, which `str.splitlines`
        # splits on, and a torn last line may end inside a multi-byte character
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        try:
            head = json.loads(lines[0].decode("utf-8"))
        except (ValueError, IndexError):
            raise JournalError(f"{self.path}: not a bulkcrm journal") from None
        if head.get("plan_sha256") != plan_sha256:
            raise JournalError(f"{self.path}: this journal belongs to another plan; "
                               "move it away to apply this plan from the start")
        if planned_at and head.get("planned_at") not in (None, planned_at):
            raise JournalError(f"{self.path}: this journal belongs to another plan with the same "
                               f"operations (made at {head['planned_at']}; this one at {planned_at}), "
                               "whose done writes are not this plan's; move it away to apply this "
                               "plan from the start")
        for n, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError too
                if n == len(lines) and not data.endswith(b"\n"):  # torn last line: the crash
                    self._cut_torn_end(len(line))  # happened while writing it
                    return
                raise JournalError(f"{self.path}:{n}: unreadable journal line") from None
            self._merge(entry)
        if not data.endswith(b"\n"):  # a whole last line whose line end was not written
            self._end_line()

    def _cut_torn_end(self, size: int) -> None:
        """Remove the last `size` bytes (a line torn by a crash), so the next line starts a line
        of its own: appended to the fragment, it would make the journal unreadable."""
        with open(self.path, "r+b") as f:
            f.truncate(f.seek(0, os.SEEK_END) - size)
            f.flush()
            os.fsync(f.fileno())

    def _end_line(self) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

    def state(self, key: str) -> str | None:
        """The last state of operation `key` (None: never sent)."""
        return self.entries.get(key, {}).get("state")

    def get(self, key: str) -> dict[str, Any]:
        return self.entries.get(key, {})

    def record(self, key: str, state: str, **info: Any) -> None:
        """Append one state change and fsync it before returning."""
        entry = {"key": key, "state": state, **{k: v for k, v in info.items() if v is not None},
                 "t": round(time.time(), 3)}
        self._merge(entry)
        self._append(entry)

    def _merge(self, entry: dict) -> None:
        """Take a state change: it replaces the operation's entry, so a status or detail of an
        earlier state (a 429 before a later success) is not reported with the new one."""
        key = entry["key"]
        merged = self.entries[key] = entry
        if merged.get("state") == "done" and merged.get("iri"):
            self._iris[key] = merged["iri"]
        else:
            self._iris.pop(key, None)

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def send_times(self) -> list[float]:
        """Unix times (seconds) of the requests the journal knows of: the last state change of
        each operation that sent one (`t`; not a failure decided without a request, such as a
        failed dependency, nor `pending`, a create looked up and not found), and an entry's
        `requests` times over (the reads a run made before its first write, `apply.CHECKS_KEY`)."""
        return [e["t"] for e in self.entries.values()
                if "t" in e and e.get("state") != "pending"
                and not (e.get("state") == "failed" and e.get("status") is None)
                for _ in range(int(e.get("requests", 1)))]

    def iris(self) -> dict[str, str]:
        """key -> IRI of every operation done (to fill `$ref:` placeholders); kept up to date
        as entries are recorded, not rebuilt per call (apply asks for it per operation)."""
        return self._iris


def peek(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A journal's first line (`target`, `plan_sha256`, …) and each operation's last entry, read
    without the checks of `Journal` (which belongs to one plan and writes): unreadable lines
    (a torn end) are skipped. ({}, {}) when the file is missing or empty."""
    p = Path(path)
    lines = p.read_bytes().split(b"\n") if p.exists() else [b""]
    entries = [_lenient(line) for line in lines]
    return entries[0], {e["key"]: e for e in entries[1:] if "key" in e}


def _lenient(line: bytes) -> dict[str, Any]:
    """One journal line as a dict ({} when it cannot be read)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def journal_path(plan_path: str | Path) -> Path:
    """The journal beside a plan file: `plan.json` -> `plan.journal.jsonl`."""
    p = Path(plan_path)
    return p.with_name(p.stem + ".journal.jsonl")


_HELD: set[str] = set()  # locks this process holds (each is taken once per process)


@contextmanager
def journal_lock(path: str | Path, *, if_used: bool = False) -> Iterator[None]:
    """Hold the locks of journal `path` for the block, so one process at a time plans over or
    applies a plan file; the OS drops them if the process dies. Nested blocks of one process
    share them (an import holds them while it plans and applies). Two OS locks (filelock, which
    leaves its files): one in the user's cache folder (`lock_dir`), for the runs on this
    machine, and `<journal>.lock` beside the plan, which runs on two machines (or containers)
    sharing the plan's folder see too, where the file system supports locks.

    Args:
        if_used: take the lock beside the plan only where an apply has made it (it exists):
            `plan` takes it so, so a plan never applied leaves no lock file beside it (a
            concurrent apply on this machine still waits for the one in the cache folder).

    Raises:
        BusyError: another process holds it (an apply of the same plan still running).
    """
    lock = Path(f"{path}.lock")
    busy = (f"{path} is in use: another bulkcrm apply of this plan is still running (another terminal, "
            "a suspended job or an overlapping cron run); let it finish or stop it, then run this again")
    mine = lock_dir() / f"journal-{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]}.lock"
    with _held(mine, busy):
        if if_used and not lock.exists():
            yield
            return
        with _held(lock, busy):
            yield


def lock_dir() -> Path:
    """Where target locks live: the user's cache folder (`platformdirs`, e.g.
    `~/.cache/bulkcrm/locks` on Linux; `XDG_CACHE_HOME` moves it)."""
    return platformdirs.user_cache_path("bulkcrm") / "locks"


@contextmanager
def target_lock(label: str) -> Iterator[None]:
    """Hold the lock of writing to target `label` (`Target.label`: a base URL or the embedded
    sandbox's file; never a key) for the block: one run at a time on this machine plans what to
    create and writes it, so two overlapping runs (cron, a second folder) cannot both create
    the same new organizations. Runs on other machines are not seen: apply's check for
    organizations created since the plan (`apply._check_created_since`) covers what they
    finished before it began. Nested blocks of one process share it.

    Raises:
        BusyError: another bulkcrm run on this machine is writing to that target.
    """
    name = target_digest(label)
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _held(folder / f"{name}.lock", f"another bulkcrm run on this machine is writing to {label} "
               "(an overlapping cron run, another folder or terminal); this run sent no write: run it "
               "again when that one has finished"):
        yield


def target_digest(label: str) -> str:
    """A file name for target `label`'s state on this machine (its lock, its request window in
    `target`): a hash of `target_key`, so no URL, let alone a key, is in the name."""
    return hashlib.sha256(target_key(label).encode()).hexdigest()[:24]


def target_key(label: str) -> str:
    """One spelling per target (its lock, its request window in `target`): scheme and host in lower case, `localhost` as 127.0.0.1 (the
    sandbox serves on it), no trailing `/` (an embedded sandbox's label is its file's path)."""
    url = urlsplit(label.rstrip("/"))
    try:
        port = url.port
    except ValueError:  # not a number 0-65535: no request can reach it; the label as it is
        return label.rstrip("/")
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        return label.rstrip("/")
    host = "127.0.0.1" if url.hostname.rstrip(".") == "localhost" else url.hostname.rstrip(".")
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme.lower()}://{host}{f':{port}' if port else ''}{url.path}"


@contextmanager
def _held(lock_path: Path, busy: str) -> Iterator[None]:
    """Hold the OS lock `lock_path` (filelock, not waiting) for the block, once per process;
    `busy`: the BusyError message when another process holds it."""
    key = str(lock_path.resolve())
    if key in _HELD:
        yield
        return
    # filelock reports a lock file it cannot create (`--out /proc/p.json`) as held by another
    # process: opened here first, the OSError names the file and the reason
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644))
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BusyError(busy) from None
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        lock.release()
