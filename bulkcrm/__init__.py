"""bulkcrm: move organizations and their notes between spreadsheets (CSV, Excel) and the
RogerRoger CRM REST API: template → read → validate → plan → apply → report, and export.

Usage::

    >>> from bulkcrm import Client, load_template, plan, apply
    >>> client = Client("https://api.rogerroger.io", key)          # 20 requests/min by default
    >>> p = plan("orgs.csv", load_template("templates/organizations.yaml"), client)
    >>> p.counts()
    {'create': 3, 'patch': 1, 'replace': 0, 'unchanged': 87, 'skip': 0, 'conflict': 0, 'invalid': 0}
    >>> report = apply(p, client, journal_file="orgs.journal.jsonl")
"""
import os as _os
import signal as _signal
import sys as _sys


def _as_command() -> bool:
    """True when this process is the `bulkcrm` command (its console script, or `python -m
    bulkcrm`: `sys.orig_argv` still shows the `-m`)."""
    script = _os.path.splitext(_os.path.basename(_sys.argv[0] or ""))[0]
    orig = list(getattr(_sys, "orig_argv", []))
    return script in ("bulkcrm", "bulkcrm-script") or "-mbulkcrm" in orig or any(
        a == "-m" and b == "bulkcrm" for a, b in zip(orig, orig[1:]))


def _stopped_while_starting(signum, frame) -> None:
    """Ctrl-C or SIGTERM while the command's modules load (about a second, before anything is
    read or sent): a line and exit 130 (143 for SIGTERM) instead of a traceback from inside an
    import; with `--json` also the JSON error every other stop prints (`cli._json_error`'s
    keys)."""
    why, code = ("terminated (SIGTERM)", 143) if signum == _signal.SIGTERM else ("interrupted", 130)
    _os.write(2, f"\nStopped ({why}) while starting; nothing was done.\n".encode())
    if "--json" in _sys.argv[1:]:
        _os.write(1, f'{{"ok": false, "error": "interrupted", "message": "{why} while starting; '
                     f'nothing was done", "exit_code": {code}}}\n'.encode())
    _os._exit(code)


if _as_command():  # `cli.main` puts Python's own Ctrl-C and SIGTERM handling in place first thing
    _signal.signal(_signal.SIGINT, _stopped_while_starting)
    _signal.signal(_signal.SIGTERM, _stopped_while_starting)

from .apply import apply  # noqa: E402 (after the handler: these imports take the time)
from .client import Client  # noqa: E402
from .export import export  # noqa: E402
from .plan import Plan, plan  # noqa: E402
from .read import read  # noqa: E402
from .report import Report  # noqa: E402
from .template import load_template  # noqa: E402
from .validate import validate  # noqa: E402

__all__ = ["load_template", "read", "validate", "plan", "apply", "export", "Client", "Plan", "Report"]
