"""The naive client the planner is compared with: per row one lookup and one write.

For every sheet row it sends `GET /organizations?identifiers[]=...` with that row's own
identifier values, then POSTs the row when nothing matched or PATCHes the first match with
every mapped field, whether or not anything changed. No batching, no diff: 2 requests a row,
exactly, whatever the data (crm-api.md §8.3 lookup + §8 write). The rows are mapped with the
library's `map_rows` so both clients send the same normalised values; only requests differ.
"""
from __future__ import annotations

import polars as pl

from bulkcrm.client import Client
from bulkcrm.diff import create_body
from bulkcrm.mapping import map_rows
from bulkcrm.match import BATCH, identifier_frame
from bulkcrm.template import Template


def run_naive(sheet: pl.DataFrame, template: Template, client: Client) -> int:
    """Import `sheet` (a `read(...).frame`) the naive way; returns requests sent.

    Raises:
        ApiError: from the client when a request fails after its retries.
    """
    start = client.requests_sent
    mapped = map_rows(sheet, template)
    ids = identifier_frame(mapped, template).group_by("row_number").agg(pl.col("value"))
    values = dict(ids.iter_rows())
    for row in mapped.iter_rows(named=True):
        mine = values.get(row["row_number"], [])[:BATCH]
        found = []                           # a row without identifiers can only be created
        if mine:
            page = client.get("/organizations", {"identifiers[]": mine, "itemsPerPage": BATCH})
            found = page.get("member") or []
        body = create_body(row, template)
        if found:
            client.patch(found[0]["@id"], body)
        else:
            client.post("/organizations", body)
    return client.requests_sent - start
