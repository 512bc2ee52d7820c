"""The server is not a door for a web page: Host and Origin checks, and a token kept out of logs.

A page on any site can make a browser send requests to 127.0.0.1. Two checks close that:
- Host: a request whose Host header is not a name this server answers to is refused (421).
  A name is `localhost`, an IP address (a page cannot make the browser send another site's
  request with an IP literal as its Host: DNS rebinding needs a name), or one given with
  `doit serve --allow-host NAME` (a name the server is reached by, behind a proxy or in DNS).
  So a rebound name (evil.example resolving to 127.0.0.1) reads nothing.
- Origin: a request that changes something (any method but GET, HEAD and OPTIONS) whose
  Origin header is present and not this server's own (scheme, host and port of its Host), or
  whose Sec-Fetch-Site says cross-site, is refused (403). A browser sends Origin with every
  cross-site POST, including the "simple" text/plain ones that skip CORS's preflight; tools
  (curl, Orca, Gate) send none and pass.
The token (Spinnaker's routes take it as a path prefix, /t/<token>/...) is masked in the
access log: `/t/***/`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_IN_PATH = re.compile(r"/t/[^/\s\"]+")
# What a token may hold: it travels in a URL path (Spinnaker's routes) and an HTTP header.
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+=-]{16,}")


def token_problem(token: str) -> str | None:
    """Why a token cannot be used on every route, or None."""
    if not TOKEN_CHARACTERS.fullmatch(token):
        return ("a token is at least 16 characters of A-Z, a-z, 0-9 and . _ ~ + = - (it travels in a URL "
                "path, where '/' splits it, and in a header, which holds ASCII only); make one with "
                "`openssl rand -hex 32`")
    return None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def split_host(header: str) -> tuple[str, str]:
    """(host, port) of a Host header value: `example:8080`, `[::1]:8080`, `127.0.0.1`."""
    parsed = urlsplit(f"//{header}")
    try:
        port = str(parsed.port or "")
    except ValueError:
        port = "?"
    return (parsed.hostname or "").lower(), port


class Guard:
    """ASGI middleware: the Host and Origin checks above."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {"localhost", *(name.lower() for name in allowed_hosts)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers") or []}
        host, port = split_host(headers.get("host", ""))
        refusal = None
        if not (is_ip(host) or host in self.allowed):
            refusal = (421, f"Host '{headers.get('host', '')}' is not a name this server answers to "
                            "(start it with --allow-host NAME to answer to it)")
        elif scope.get("method", "GET") not in SAFE_METHODS:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site":
                refusal = (403, "a request from another site's page cannot change anything here")
            elif origin is not None:
                seen = urlsplit(origin)
                try:
                    origin_port = str(seen.port or {"http": 80, "https": 443}.get(seen.scheme, ""))
                except ValueError:
                    origin_port = "?"
                own_port = port or "80"
                if (seen.hostname or "").lower() != host or origin_port != own_port:
                    refusal = (403, f"a request from {origin} cannot change anything here (Origin is not this server)")
        if refusal is not None:
            await JSONResponse({"error": refusal[1]}, status_code=refusal[0])(scope, receive, send)
            return
        await self.app(scope, receive, send)


class MaskToken(logging.Filter):
    """Rewrites `/t/<token>` to `/t/***` in a log record's arguments (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_PATH.sub("/t/***", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_PATH.sub("/t/***", record.msg)
        return True
