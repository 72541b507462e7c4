"""Request/response records and the error documents of the sandbox (crm-api.md §2, §3, §5).

Stage: sandbox. The HTTP server turns each HTTP exchange into a `Request`; the app answers
with a `Response`; errors are raised as `HttpError` and rendered as problem documents.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

LD_JSON = "application/ld+json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"
ERROR_LINK = '<http://www.w3.org/ns/hydra/error>; rel="http://www.w3.org/ns/json-ld#error"'
NOT_BLANK = ("c1051bb4-d103-4f74-8988-acbcafc7fdc3", "This value should not be blank.")
NOT_NULL = ("ad32d13f-c3d4-423b-909a-857b961eb720", "This value should not be null.")
CHOICE = ("8e179f1b-97aa-4560-a02f-2a8b42e49df7", "The value you selected is not a valid choice.")
"""Symfony constraint (code, message) pairs used in 422 violations (crm-api.md §5.2)."""
REASONS = {400: "Bad Request", 403: "Access Denied.", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable", 415: "Unsupported Media Type", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    """One HTTP request as the app sees it.

    Attributes:
        method: upper-case verb. path: URL path as sent, without the query string.
        query: raw query string (no `?`). headers: header names lower-cased.
        body: raw bytes. tenant: set once the key is accepted.
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    tenant: str | None = None

    @property
    def media_type(self) -> str | None:
        """Lower-case media type of `Content-Type` without parameters (None when absent)."""
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() if value else None


@dataclass
class Response:
    """One answer. `drop=True` tells the server to close the connection without answering."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


class HttpError(Exception):
    """An error answer: `status`, `detail`, extra `headers`, 422 `violations`."""

    def __init__(self, status: int, detail: str | None = None, *,
                 headers: list[tuple[str, str]] | None = None,
                 violations: list[dict] | None = None):
        self.status, self.detail = status, detail or REASONS.get(status, "An error occurred")
        self.headers, self.violations = headers or [], violations or []
        super().__init__(f"{status} {self.detail}")


def json_response(status: int, doc: Any, content_type: str = LD_JSON,
                  headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", content_type), *(headers or [])])


def problem(err: HttpError) -> Response:
    """Problem document (crm-api.md §5.2): generic, or ConstraintViolation for 422."""
    if err.violations:
        code = err.violations[0]["code"]
        doc = {"@context": "/contexts/ConstraintViolation", "@id": f"/validation_errors/{code}",
               "@type": "ConstraintViolation", "type": f"/validation_errors/{code}",
               "title": "An error occurred", "detail": err.detail, "description": err.detail,
               "status": err.status, "violations": err.violations}
    else:
        doc = {"@context": "/contexts/Error", "@id": f"/errors/{err.status}", "@type": "Error",
               "type": f"/errors/{err.status}", "title": "An error occurred",
               "detail": err.detail, "description": err.detail, "status": err.status}
    return json_response(err.status, doc, PROBLEM, [("Link", ERROR_LINK), *err.headers])


def validation_error(violations: list[tuple[str, tuple[str, str]]]) -> HttpError:
    """422 from [(propertyPath, (code, message))]; `detail` joins `path: message` lines."""
    items = [{"propertyPath": p, "message": m, "code": c} for p, (c, m) in violations]
    detail = "\n".join(f"{v['propertyPath']}: {v['message']}" for v in items)
    return HttpError(422, detail, violations=items)


def unauthorized(message: str) -> Response:
    """401 as the authenticator answers it, plain JSON (crm-api.md §2 [SANDBOX])."""
    return json_response(401, {"code": 401, "message": message}, "application/json")
