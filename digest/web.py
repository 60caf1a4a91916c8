"""`digest serve`: the reader-facing web app (unsubscribe and the web archive). The only starlette import.

    POST /u/<token>       RFC 8058 one-click unsubscribe (the body must be ``List-Unsubscribe=One-Click``),
                          or the page's own buttons (``scope=edition`` / ``scope=all``). Idempotent, 200;
                          any other body is a 400 and changes nothing.
    GET  /u/<token>       says which edition and which address, with the two buttons. Changes nothing:
                          link scanners in corporate mail follow every link.
    GET  /i/<edition>/<date>  the "view in browser" page of an issue at least one reader was sent, as
                          the runner stored it when the issue went out (``archive.py``); 410 for an
                          issue sent before pages were kept. Nothing is gathered or fetched here.
    GET  /i/<edition>     the edition's past issues, newest first.
    GET  .../             a trailing slash redirects to the same page under ``[web] base_url``.
    GET  /approve/<token> an editor's approve link from a preview: what it approves (edition, date,
                          fingerprint, editor) and one button. Changes nothing.
    POST /approve/<token> approves (``confirm=approve``), once, if the issue still composes to the
                          link's fingerprint; a forged link is a 400, an expired or used one a 410,
                          an issue that changed since the preview a 409, and nothing is approved.

Limits: a form body is read as a stream and refused past 4,096 bytes (413), whatever its
framing; a request must arrive in full (headers and body) within ``REQUEST_SECONDS`` of its
first byte or its connection is closed.

No cookies, no sessions, no login: the signed token is the whole authority, and it only ever
lets its address leave (never join). Every response carries a strict Content-Security-Policy;
pages use no scripts and no external assets. Unknown or forged tokens get a plain 400 page that
says only that the link is not valid.

The pages are rendered by ``render.Pages`` (Jinja2, autoescaped, StrictUndefined) from ``web/``
through the emails' loader: the newsroom's ``[paths] templates`` folder first, then
``digest/templates/web/``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import re
import socket
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .compose.links import LinkRefused
from .compose.personalise import verify_token
from .compose.render import Pages, date_label
from .deliver.preview import approve_by_link, read_approve_link
from .errors import ConfigError, DigestError, InputError
from .models import Edition, Settings, SigningKey
from .readers.addresses import address_key
from .state.ledger import Ledger

log = logging.getLogger("digest.web")

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
MAX_TOKEN_CHARS = 1024  # a real token is well under 400 characters
MAX_FORM_BYTES = 4096  # the forms carry one or two short fields
REQUEST_SECONDS = 10.0  # from a request's first byte to its last, headers and body
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ONE_CLICK = ("List-Unsubscribe", "One-Click")
PRIVATE_PATHS = ("/u/", "/approve/")  # pages about one person's link: never cached, never indexed

# --- responses -----------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds the security headers to every response (and ``Cache-Control: no-store`` under /u/ and /approve/)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope.get("path", "").startswith(PRIVATE_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_security_headers(list(message.get("headers", [])), private)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_security_headers(headers: list[tuple[bytes, bytes]], private: bool) -> list[tuple[bytes, bytes]]:
    names = {SECURITY_HEADERS[0][0], SECURITY_HEADERS[1][0], SECURITY_HEADERS[2][0]}
    if private:
        names |= {b"cache-control", b"x-robots-tag"}
    kept = [(k, v) for k, v in headers if k.lower() not in names]
    kept += SECURITY_HEADERS
    if private:
        kept += [(b"cache-control", b"no-store"), (b"x-robots-tag", b"noindex, nofollow")]
    return kept


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_state(request).pages.render(name, **context), status_code=status)


def _error_page(request: Request, status: int, title: str, message: str, *, close: bool = False) -> HTMLResponse:
    response = _page(request, "error.html", status, title=title, message=message)
    if close:
        response.headers["Connection"] = "close"
    return response


def _invalid_link(request: Request) -> HTMLResponse:
    # Nothing about why: a forger learns no more than "no".
    return _error_page(request, 400, "This link is not valid",
                       "This link is not valid. Please use the unsubscribe link in a recent email from us.")


def _too_large(request: Request) -> HTMLResponse:
    # The rest of the body is never read, so the connection cannot carry another request.
    return _error_page(request, 413, "Request too large", "This request is too large.", close=True)


def _bad_request(request: Request) -> HTMLResponse:
    return _error_page(request, 400, "Bad request", "This request could not be read.")


def _not_found(request: Request) -> HTMLResponse:
    return _error_page(request, 404, "Page not found", "There is no page at this address.")


# --- the state the handlers share ------------------------------------------------------------------


@dataclass(frozen=True)
class WebState:
    """What every handler reads: the settings, the keys that verify tokens, and the ledger access.

    Each request opens the state database for its own read or write and closes it: the web
    process holds no connection between requests, so the senders' writes are never blocked by it.
    """

    settings: Settings
    keys: tuple[SigningKey, ...]
    editions: dict[str, Edition]
    pages: Pages  # the web pages, through the emails' loader: the newsroom's folder first

    @classmethod
    def of(cls, settings: Settings) -> WebState:
        if not settings.signing_keys:
            raise ConfigError("digest serve needs DIGEST_SECRET_KEY to check unsubscribe links", field="DIGEST_SECRET_KEY")
        return cls(settings, settings.signing_keys, {e.slug: e for e in settings.editions},
                   Pages(settings.paths.templates))

    def reader_of(self, request: Request) -> tuple[str, Edition] | None:
        """(address, edition) the request's token lets leave, or None for a token not ours."""
        token = request.path_params["token"]
        if len(token) > MAX_TOKEN_CHARS:
            return None
        verified = verify_token(self.keys, token)
        if verified is None:
            return None
        email, slug = verified
        edition = self.editions.get(slug)
        if edition is None or not email:
            return None
        return email, edition

    def already_left(self, email: str, edition: Edition) -> tuple[bool, bool]:
        """(left this edition?, left every edition?), read without writing anything."""
        ledger = Ledger.read_only(self.settings.state_db)
        if ledger is None:
            return False, False
        with closing(ledger):
            key = address_key(email)
            return ledger.is_suppressed(key, edition.slug), ledger.suppression_reason(key, "*") is not None

    def leave(self, email: str, edition: Edition, scope: str) -> None:
        """Suppress ``email`` for ``edition``, or for every edition when ``scope`` is ``all``."""
        with closing(Ledger(self.settings.state_db)) as ledger:
            ledger.suppress(address_key(email), "*" if scope == "all" else edition.slug, "unsubscribed",
                            "one-click unsubscribe" if scope == "one-click" else f"unsubscribe page ({scope})")

    def issue_page(self, edition: Edition, date: dt.date) -> tuple[bool, str | None]:
        """(sent to anyone?, the kept archive page or None)."""
        ledger = Ledger.read_only(self.settings.state_db)
        if ledger is None:
            return False, None
        with closing(ledger):
            return ledger.public_issue(edition.slug, date)

    def past_issues(self, edition: Edition) -> list[dict[str, str]]:
        """The edition's public issues, newest first, as the archive list shows them."""
        ledger = Ledger.read_only(self.settings.state_db)
        if ledger is None:
            return []
        with closing(ledger):
            dates = ledger.public_dates(edition.slug)
        return [{"href": f"{edition.slug}/{d.isoformat()}", "label": date_label(d), "iso": d.isoformat()} for d in dates]


def _state(request: Request) -> WebState:
    return request.app.state.digest


# --- the handlers ----------------------------------------------------------------------------------


async def unsubscribe_link(request: Request) -> Response:
    """GET or POST /u/<token>: the token is checked here, once, for both."""
    # One route for both methods, so a PUT gets 405 with "Allow: GET, HEAD, POST".
    state = _state(request)
    reader = state.reader_of(request)
    if reader is None:
        return _invalid_link(request)
    email, edition = reader
    if request.method == "POST":
        return await unsubscribe(request, state, email, edition)
    return await unsubscribe_page(request, state, email, edition)


async def unsubscribe_page(request: Request, state: WebState, email: str, edition: Edition) -> Response:
    """GET /u/<token>: which edition and which address, with the two buttons. Changes nothing."""
    left_edition, left_all = await run_in_threadpool(state.already_left, email, edition)
    return _page(request, "unsubscribe.html", newsroom=state.settings.newsroom, edition=edition, email=email,
                 left_edition=left_edition, left_all=left_all)


async def unsubscribe(request: Request, state: WebState, email: str, edition: Edition) -> Response:
    """POST /u/<token>: RFC 8058 one-click, or the page's buttons (``scope=edition`` / ``scope=all``)."""
    form = await _small_form(request)
    if isinstance(form, Response):
        return form
    scope = form.get("scope")
    one_click = form.get(_ONE_CLICK[0]) == _ONE_CLICK[1]
    if scope is None:
        if not one_click:
            # RFC 8058 names the one body that unsubscribes; anything else may be a probe or a mistake.
            return _bad_request(request)
        await run_in_threadpool(state.leave, email, edition, "one-click")
        log.info("unsubscribed one reader from %s (one-click)", edition.slug)
        return PlainTextResponse(f"Unsubscribed from {edition.name}.\n")
    if scope not in ("edition", "all"):
        return _bad_request(request)
    await run_in_threadpool(state.leave, email, edition, scope)
    log.info("unsubscribed one reader from %s", edition.slug if scope == "edition" else "every edition")
    if one_click:
        return PlainTextResponse(f"Unsubscribed from {edition.name if scope == 'edition' else 'every edition'}.\n")
    return _page(request, "unsubscribed.html", newsroom=state.settings.newsroom, edition=edition, email=email, scope=scope)


async def _small_form(request: Request) -> Any:
    """The request's form, read within ``MAX_FORM_BYTES`` and ``REQUEST_SECONDS``, or the error response."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        return _too_large(request)
    try:
        body = await _read_body(request, MAX_FORM_BYTES, REQUEST_SECONDS)
    except (TimeoutError, ClientDisconnect):
        return _error_page(request, 408, "Request timeout", "This request took too long.", close=True)
    if body is None:  # chunked, or a Content-Length that lied
        return _too_large(request)
    try:
        return await _replayed(request, body).form(max_files=0, max_fields=8)
    except Exception:  # malformed multipart or urlencoded body
        return _bad_request(request)


async def approve_link(request: Request) -> Response:
    """GET /approve/<token>: what the link approves, with the one button (a POST back here); changes
    nothing. POST: approve, once, if the issue still composes to the link's fingerprint."""
    state = _state(request)
    token = request.path_params["token"]
    if len(token) > MAX_TOKEN_CHARS:
        return _invalid_approve_link(request, "invalid")
    try:
        link = await run_in_threadpool(read_approve_link, state.settings, token)
    except LinkRefused as exc:
        return _invalid_approve_link(request, exc.reason)
    context = {"newsroom": state.settings.newsroom, "edition": link.edition, "date": link.date.isoformat(),
               "fingerprint": link.fingerprint, "editor": link.editor, "expires": f"{link.expires:%Y-%m-%d %H:%M UTC}"}
    if request.method == "GET":
        return _page(request, "approve.html", **context)
    form = await _small_form(request)
    if isinstance(form, Response):
        return form
    if form.get("confirm") != "approve":
        return _bad_request(request)
    try:
        _, approval = await run_in_threadpool(approve_by_link, state.settings, token)
    except LinkRefused as exc:
        return _invalid_approve_link(request, exc.reason)
    except InputError as exc:
        return _error_page(request, 409, "Not approved", f"Nothing was approved: {exc}")
    log.info("approved %s %s as %s by link", link.edition.slug, link.date, approval.fingerprint)
    return _page(request, "approved.html", **context)


def _invalid_approve_link(request: Request, reason: str) -> HTMLResponse:
    if reason == "expired":
        return _error_page(request, 410, "This link has expired",
                           "This approve link has expired: the issue is past its delivery deadline.")
    if reason == "used":
        return _error_page(request, 410, "This link has been used",
                           "This approve link has been used already; each works once. `digest status` shows the approval.")
    return _error_page(request, 400, "This link is not valid", "This link is not valid.")


async def archive_issue(request: Request) -> Response:
    """GET /i/<edition>/<date>: the page kept when the issue was sent."""
    state = _state(request)
    edition = state.editions.get(request.path_params["edition"])
    text = request.path_params["date"]
    if edition is None or not _DATE.match(text):
        return _not_found(request)
    try:
        date = dt.date.fromisoformat(text)
    except ValueError:
        return _not_found(request)
    sent, page = await run_in_threadpool(state.issue_page, edition, date)
    if not sent:  # no such issue, or no reader has been sent it (yet)
        return _not_found(request)
    if page is None:
        return _error_page(request, 410, "Not in the archive",
                           "This issue was sent before the archive kept copies of issues, so it cannot be shown here.")
    return HTMLResponse(page, headers={"cache-control": "public, max-age=300"})


async def archive_list(request: Request) -> Response:
    """GET /i/<edition>: the edition's past issues, newest first."""
    state = _state(request)
    edition = state.editions.get(request.path_params["edition"])
    if edition is None:
        return _not_found(request)
    issues = await run_in_threadpool(state.past_issues, edition)
    return _page(request, "archive.html", newsroom=state.settings.newsroom, edition=edition, issues=issues)


async def without_slash(request: Request) -> Response:
    """GET .../ : the same page without the slash, under ``[web] base_url``."""
    # Built from base_url and known values only: a Host header never reaches a Location.
    state = _state(request)
    edition = state.editions.get(request.path_params["edition"])
    date = request.path_params.get("date")
    if edition is None or (date is not None and not _DATE.match(date)):
        return _not_found(request)
    target = f"{state.settings.base_url}/i/{edition.slug}" + (f"/{date}" if date else "")
    return RedirectResponse(target, status_code=308)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (404, 405, ...) as our own pages."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return _not_found(request)
    if status == 405:
        response = _error_page(request, 405, "Method not allowed", "This page cannot be used that way.")
        allow = getattr(exc, "headers", None) or {}
        if "Allow" in allow:
            response.headers["Allow"] = allow["Allow"]
        return response
    return _error_page(request, status, "Bad request", "This request could not be handled.")


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: a plain 500 page, and a log line with no reader's data."""
    # Sent by the outermost middleware, past SecurityHeaders: add the headers here too.
    path = request.url.path  # no reader's (or editor's) token in logs
    for prefix in PRIVATE_PATHS:
        if path.startswith(prefix):
            path = f"{prefix}<token>"
    log.error("error serving %s %s: %s", request.method, path, type(exc).__name__)
    response = _error_page(request, 500, "Something went wrong", "Something went wrong on our side. Please try again later.")
    response.raw_headers[:] = _with_security_headers(list(response.raw_headers),
                                                      request.url.path.startswith(PRIVATE_PATHS))
    return response


ROUTES = (
    Route("/u/{token}", unsubscribe_link, methods=["GET", "POST"]),
    Route("/approve/{token}", approve_link, methods=["GET", "POST"]),
    Route("/i/{edition}", archive_list, methods=["GET"]),
    Route("/i/{edition}/{date}", archive_issue, methods=["GET"]),
    Route("/i/{edition}/", without_slash, methods=["GET"]),
    Route("/i/{edition}/{date}/", without_slash, methods=["GET"]),
)


def create_app(settings: Settings) -> Starlette:
    """The ASGI app for ``settings``. Needs at least one signing key (DIGEST_SECRET_KEY)."""
    state = WebState.of(settings)
    app = Starlette(routes=list(ROUTES), middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.digest = state
    app.router.redirect_slashes = False  # Starlette's would build the Location from the Host header
    return app


async def _read_body(request: Request, limit: int, seconds: float) -> bytes | None:
    """The request body, read as a stream; None as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async with asyncio.timeout(seconds):
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
    return bytes(body)


def _replayed(request: Request, body: bytes) -> Request:
    """The same request with its body already read, for Starlette's form parser."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _deadline_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request to arrive in full.

    uvicorn times out only idle keep-alive connections; a client that sends a byte a second
    would hold a connection (and its memory) forever. The clock starts at the connection and
    after each response, and stops once the request's last byte is in.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _DeadlineH11(H11Protocol):
        request_seconds = seconds

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = self.loop.call_later(self.request_seconds, self._too_slow)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
                self._cancel_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._cancel_deadline()
                self._deadline = self.loop.call_later(self.request_seconds, self._too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            super().connection_lost(exc)

        def _cancel_deadline(self) -> None:
            deadline = getattr(self, "_deadline", None)
            if deadline is not None:
                deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                log.info("closed a connection whose request took longer than %g s", self.request_seconds)
                self.transport.close()

    return _DeadlineH11


def server_config(app: ASGIApp, host: str, port: int, *, request_seconds: float = REQUEST_SECONDS,
                  log_level: str = "info") -> Any:
    """uvicorn's settings for ``app``: h11 with a per-request deadline, no access log.

    The access log is off: every unsubscribe URL carries a reader's address inside its token.
    """
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=_deadline_protocol(request_seconds), access_log=False,
                          server_header=False, proxy_headers=True, log_level=log_level, timeout_keep_alive=5)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080,
          ready: Callable[[str], None] | None = None) -> None:
    """Run the app with uvicorn until interrupted (behind the newsroom's HTTPS proxy).

    ``ready`` is told where it listens once the socket is bound.
    """
    import uvicorn

    # The socket is bound here, before uvicorn starts, so a busy port is one plain line, not a log.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise DigestError(f"{shown} is already in use; pick another --port") from None
        raise DigestError(f"cannot listen on {shown}: {exc.strerror or exc}") from None
    if ready is not None:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        ready(f"listening on http://{shown}/ for {settings.base_url}/ (put the HTTPS proxy in front); Ctrl-C stops")
    with listener:
        uvicorn.Server(server_config(create_app(settings), host, port)).run(sockets=[listener])
