"""A faithful local emulator of the RogerRoger CRM REST API (crm-api.md), for tests and demos.

Modules: `server` (Sandbox, run), `app` (routes), `store` (SQLite), `query` (filters,
pagination), `validation` (bodies), `schema` (fields, rendering), `runtime` (keys, rate
window, faults, request log), `seeding`, `wire` (request/response/errors).

Example::

    >>> from bulkcrm.sandbox import Sandbox
    >>> with Sandbox(api_keys={"k1": "tenant-a"}, rate_limit=None) as sb:
    ...     sb.seed({"organizations": [{"title": "Acme"}]})
    ...     [o["title"] for o in sb.store.all("organizations", tenant="tenant-a")]
    {'users': 0, 'tags': 0, 'segments': 0, 'note_categories': 0, 'organizations': 1, 'notes': 0, 'people': 0}
    ['Acme']
"""
from .runtime import Faults, LoggedRequest
from .server import Sandbox, check_loopback, parse_rate_limit, run
from .store import Store

__all__ = ["Sandbox", "Faults", "LoggedRequest", "Store", "run", "parse_rate_limit",
           "check_loopback"]
