"""Login, sessions, CSRF and security headers, as one middleware.

- Password login (``MEMESEARCH_PASSWORD``): the ``ms_session`` cookie holds a signed random
  id. An id is a login only while the server-side session store (web/sessions.py) knows it,
  so logging out ends it for good and a new password ends every session.
- Wrong passwords and wrong API tokens are throttled per client and overall (web/throttle.py):
  HTTP 429 + Retry-After.
- The JSON API also accepts ``Authorization: Bearer <token>`` (``MEMESEARCH_API_TOKEN``,
  or the password when no token is set). A bearer request carries no ambient
  credentials, so it needs no CSRF token and no Origin check.
- CSRF, password or not (a page elsewhere could otherwise drive a local server): every
  state-changing request must come from this server's own origin (``Origin``, else
  ``Referer``, when the browser sends one) and send the ``X-CSRF-Token`` header (or a
  ``csrf_token`` form field) equal to an HMAC of the session id. Every browser gets a
  signed session id on its first visit (a new one at login), so the token is bound to a
  session the server issued: a cookie planted by another site (cookies ignore ports)
  cannot supply it. ``ms_csrf`` mirrors the token for scripts and tests; it is never trusted.
- Cookies are ``Secure`` when the request is https (``X-Forwarded-Proto`` counts only from
  ``MEMESEARCH_TRUSTED_PROXIES``, web/proxies.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memesearch.web.proxies import Network, Origin, RequestView, view_of
from memesearch.web.sessions import SessionStore
from memesearch.web.throttle import LoginThrottle

SESSION_COOKIE = "ms_session"
CSRF_COOKIE = "ms_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 30 * 24 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Reachable without logging in: the login form itself, assets, the icon and the health probe.
PUBLIC_PREFIXES = ("/login", "/static/", "/healthz", "/favicon.ico")
MIN_PASSWORD_CHARS = 8

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


def password_problem(password: str) -> str | None:
    """Why ``password`` is too weak to guard a server others can reach, or None."""
    if not password:
        return "no password is set"
    if len("".join(password.split())) < MIN_PASSWORD_CHARS:
        return f"the password has fewer than {MIN_PASSWORD_CHARS} characters that are not spaces"
    return None


class Guard:
    """What the middleware and the login routes share: secrets, sessions, throttle, proxies."""

    def __init__(self, secret: bytes, password: str, api_token: str, sessions: SessionStore,
                 throttle: LoginThrottle, trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.password = password
        self.api_token = api_token or password
        self.signer = TimestampSigner(secret, salt="memesearch-session")
        self._csrf_key = hashlib.sha256(b"memesearch-csrf\0" + secret).digest()
        self.sessions = sessions
        self.throttle = throttle
        self.trusted_proxies = trusted_proxies

    @property
    def login_required(self) -> bool:
        return bool(self.password)

    def check_password(self, candidate: str) -> bool:
        return bool(self.password) and hmac.compare_digest(candidate.encode(), self.password.encode())

    def session_id_of(self, cookie: str | None) -> str | None:
        """The id in a session cookie the server signed, or None."""
        if not cookie:
            return None
        try:
            return self.signer.unsign(cookie, max_age=SESSION_MAX_AGE_S).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def bearer_token(self, request: Request) -> str | None:
        """The token of an ``Authorization: Bearer`` header, or None when there is none."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def valid_token(self, token: str) -> bool:
        return bool(self.api_token) and hmac.compare_digest(token.encode(), self.api_token.encode())

    def log_in(self, request: Request) -> None:
        """A fresh session id (never the one the browser came with: no fixation) and its cookie."""
        self.throttle.succeeded(request.state.view.client)
        request.state.session_id = self.sessions.create()
        request.state.logged_in = True

    def log_out(self, request: Request) -> None:
        self.sessions.end(request.state.session_id)
        request.state.session_id = secrets.token_urlsafe(32)
        request.state.logged_in = False


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


def _refuse(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    from memesearch.web.errors import error_response

    return error_response(request, status, message, headers=headers)


def too_many_attempts(wait_s: int) -> str:
    return f"too many wrong passwords or tokens from here: wait {wait_s} s before trying again"


def foreign_origin(request: Request, view: RequestView) -> str | None:
    """Why the browser says the request comes from another site (Origin, else Referer), or None."""
    claimed = request.headers.get("origin")
    if claimed is None:
        claimed = request.headers.get("referer")
        if claimed is None:
            return None  # not a browser, or one that sends neither: the CSRF token still decides
    own = view.origin
    if Origin.parse(claimed) == own and own is not None:
        return None
    here = f"{own.scheme}://{own.host}:{own.port}" if own else "unknown"
    return (f"cross-site request refused: it comes from {claimed[:100]!r}, not from this server ({here}); "
            "behind a reverse proxy, set MEMESEARCH_TRUSTED_PROXIES so its X-Forwarded-Proto/-Host count")


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
        guard = self.guard
        request = Request(scope, receive)
        view = request.state.view = view_of(request, guard.trusted_proxies)
        cookie_id = guard.session_id_of(request.cookies.get(SESSION_COOKIE))
        request.state.session_id = cookie_id or secrets.token_urlsafe(32)
        request.state.logged_in = bool(guard.login_required and cookie_id and guard.sessions.is_active(cookie_id))
        request.state.csrf_token = guard.csrf_token(request.state.session_id)
        refusal = await self._refusal(request, view)
        if _body_was_read(request):
            receive = _replaying(request._body, receive)  # the CSRF check consumed the form body
        sent_csrf = request.cookies.get(CSRF_COOKIE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
                session_id = request.state.session_id  # a login or logout may have replaced it
                if session_id != cookie_id:
                    max_age = SESSION_MAX_AGE_S if request.state.logged_in else None
                    headers.append("set-cookie", _cookie(SESSION_COOKIE, guard.signer.sign(session_id).decode(),
                                                         view.https, max_age))
                token = guard.csrf_token(session_id)
                if sent_csrf != token:
                    headers.append("set-cookie", _cookie(CSRF_COOKIE, token, view.https, None))
            await send(message)

        await (refusal or self.app)(scope, receive, send_with_headers)

    async def _refusal(self, request: Request, view: RequestView) -> Response | None:
        """A response refusing the request, or None when it may go on."""
        guard = self.guard
        path = request.url.path
        token = guard.bearer_token(request)
        bearer = False
        if token is not None:
            # Throttled before the token is even compared, or an attacker past the limit would
            # still learn which guess is right.
            wait = guard.throttle.retry_after(view.client)
            if wait:
                return _refuse(request, 429, too_many_attempts(wait), {"Retry-After": str(wait)})
            bearer = guard.valid_token(token)
            if not bearer:
                guard.throttle.failed(view.client)
        public = path.startswith(PUBLIC_PREFIXES)
        if guard.login_required and not public and not bearer and not request.state.logged_in:
            if path.startswith("/api/") or request.method not in SAFE_METHODS:
                return _refuse(request, 401, "log in first (or send Authorization: Bearer <token>)")
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if request.method not in SAFE_METHODS and not bearer:
            foreign = foreign_origin(request, view)
            if foreign:
                return _refuse(request, 403, foreign)
            submitted = await _submitted_csrf(request)
            if not submitted or not hmac.compare_digest(submitted.encode(), request.state.csrf_token.encode()):
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


def _cookie(name: str, value: str, secure: bool, max_age: int | None) -> str:
    # HttpOnly: pages read the CSRF token from a meta tag, never from the cookie.
    response = Response()
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", path="/", secure=secure)
    return response.headers["set-cookie"]
