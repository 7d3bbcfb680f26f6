"""Login, CSRF and security headers, as one middleware.

- Password login (``MEMESEARCH_PASSWORD``): a signed, HttpOnly session cookie.
- The JSON API also accepts ``Authorization: Bearer <token>`` (``MEMESEARCH_API_TOKEN``,
  or the password when no token is set). A bearer request carries no ambient
  credentials, so it needs no CSRF token.
- CSRF: every state-changing request must send the ``X-CSRF-Token`` header (or a
  ``csrf_token`` form field) equal to the ``ms_csrf`` cookie (double submit),
  password or not: a page elsewhere could otherwise drive a local server.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "ms_session"
CSRF_COOKIE = "ms_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 30 * 24 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Reachable without logging in: the login form itself, assets, the icon and the health probe.
PUBLIC_PREFIXES = ("/login", "/static/", "/healthz", "/favicon.ico")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def load_secret(path: Path) -> bytes:
    """The server's signing key, created once with owner-only permissions."""
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


class Guard:
    """What the middleware and the login routes share: the password, token and signer."""

    def __init__(self, secret: bytes, password: str, api_token: str) -> None:
        self.password = password
        self.api_token = api_token or password
        self.signer = TimestampSigner(secret, salt="memesearch-session")

    @property
    def login_required(self) -> bool:
        return bool(self.password)

    def check_password(self, candidate: str) -> bool:
        return bool(self.password) and hmac.compare_digest(candidate.encode(), self.password.encode())

    def session_value(self) -> str:
        return self.signer.sign(secrets.token_hex(8)).decode()

    def valid_session(self, value: str | None) -> bool:
        if not value:
            return False
        try:
            self.signer.unsign(value, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return False
        return True

    def valid_bearer(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return bool(self.api_token) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_token.encode())


def csrf_token_of(request: Request) -> str:
    """The CSRF token of this browser (set by the middleware on first visit)."""
    return request.state.csrf_token


async def _submitted_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", "replace")
        return (parse_qs(body).get("csrf_token") or [""])[0]
    return ""


def _refuse(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    from memesearch.web.errors import render_error_page

    return render_error_page(request, status, message, None)


class SecurityMiddleware:
    """Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one runs every request
    through an extra task and memory streams, which cost a noticeable share of the CPU of a
    fast request (a search) under load."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        cookie_token = request.cookies.get(CSRF_COOKIE, "")
        request.state.csrf_token = cookie_token or secrets.token_urlsafe(24)
        refusal = await self._refusal(request, cookie_token)
        if _body_was_read(request):
            receive = _replaying(request._body, receive)  # the CSRF check consumed the form body
        new_cookie = None if cookie_token else _csrf_cookie_header(request.state.csrf_token)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
                if new_cookie:
                    headers.append("set-cookie", new_cookie)
            await send(message)

        await (refusal or self.app)(scope, receive, send_with_headers)

    async def _refusal(self, request: Request, cookie_token: str) -> Response | None:
        """A response refusing the request, or None when it may go on."""
        path = request.url.path
        bearer = self.guard.valid_bearer(request)
        public = path.startswith(PUBLIC_PREFIXES)
        if self.guard.login_required and not public and not bearer:
            if not self.guard.valid_session(request.cookies.get(SESSION_COOKIE)):
                if path.startswith("/api/") or request.method not in SAFE_METHODS:
                    return _refuse(request, 401, "log in first (or send Authorization: Bearer <token>)")
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if request.method not in SAFE_METHODS and not bearer:
            submitted = await _submitted_csrf(request)
            if not cookie_token or not submitted or not hmac.compare_digest(submitted, cookie_token):
                return _refuse(request, 403, "missing or wrong CSRF token: reload the page and try again")
        return None


def _body_was_read(request: Request) -> bool:
    return hasattr(request, "_body")


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the already-read body to the app, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _csrf_cookie_header(token: str) -> str:
    # Pages read the token from a meta tag, so the cookie need not be visible to scripts.
    response = Response()
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="lax", path="/")
    return response.headers["set-cookie"]
