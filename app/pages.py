"""What serves avcall's pages, for `avcall serve` and `avcall cluster up` alike: the request guard in front of
every route, the token, the static files from a fixed list and the page's enhancer choices.

The guard refuses, before any route: a request for another host name while bound to loopback (DNS rebinding),
one from another site's page (Origin, Sec-Fetch-Site), a body over MAX_BODY (413) and a body on a route that
takes none (400).
"""

from __future__ import annotations

import hmac
import secrets
from importlib import resources

from aiohttp import web

MAX_BODY = 256 * 1024  # an SDP offer is a few kB
STATIC_FILES = {"client.js": "application/javascript", "controls.js": "application/javascript",
                "overlay.js": "application/javascript", "style.css": "text/css"}


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


def guarded_app(bind_host: str) -> web.Application:
    """An aiohttp app behind the guard (the module's docstring), serving /static/<one of STATIC_FILES>."""

    @web.middleware
    async def guard(request: web.Request, handler):
        host = request.host.rsplit(":", 1)[0].strip("[]")
        if is_loopback(bind_host) and not is_loopback(host):
            return error(403, f"this server answers to 127.0.0.1 or localhost, not {host!r}")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return error(403, "cross-origin request refused")
        site = request.headers.get("Sec-Fetch-Site", "same-origin")
        if site not in ("same-origin", "none") and not _opens_a_page(request):
            return error(403, "cross-site request refused")
        if (request.content_length or 0) > MAX_BODY:
            return error(413, f"body larger than {MAX_BODY} bytes")
        if request.method in ("GET", "HEAD") and (request.content_length or request.body_exists):
            return error(400, "this route takes no body")
        return await handler(request)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:  # a fixed list: no path ever reaches the file system
            raise web.HTTPNotFound()
        return web.Response(text=static_text(name), content_type=STATIC_FILES[name])

    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    app.router.add_get("/static/{name}", static)
    return app


def _opens_a_page(request: web.Request) -> bool:
    """A link on another site to the page itself (a top-level navigation): harmless, a call starts only when the
    user starts it there. Anything else from another site (a fetch, a script tag) is refused."""
    return (request.method == "GET" and request.path == "/" and request.headers.get("Sec-Fetch-Mode") == "navigate"
            and request.headers.get("Sec-Fetch-Dest", "document") == "document")


def token_ok(token: str | None, given: str | None) -> bool:
    """Whether `given` is the server's `token` (compared in constant time); any is, without a token."""
    return not token or hmac.compare_digest(str(given or "").encode(), token.encode())


def new_token() -> str:
    return secrets.token_urlsafe(18)


def error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def static_text(name: str) -> str:
    return resources.files("avcall.app").joinpath("static", name).read_text()


def page(name: str, offered: tuple[str, ...], selected: str) -> str:
    """The page `name` (index.html, room.html) with the call's controls in it (controls.html: the same on both
    pages), the enhancer's choices ("off" and the suppressors that ship) with `selected` selected."""
    from avcall.pipelines.suppressors import describe

    options = "".join(f'<option value="{m}"{" selected" if m == selected else ""}>'
                      f'{"off" if m == "off" else describe(m)}</option>' for m in offered)
    controls = static_text("controls.html").replace("<!--enhance-options-->", options)
    return static_text(name).replace("<!--controls-->", controls)
