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
from .apply import apply
from .client import Client
from .export import export
from .plan import Plan, plan
from .read import read
from .report import Report
from .template import load_template
from .validate import validate

__all__ = ["load_template", "read", "validate", "plan", "apply", "export", "Client", "Plan", "Report"]
