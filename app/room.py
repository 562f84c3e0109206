"""The served page's room mode (issue 25): `/room` joins a Janus VideoRoom with janus.js, publishes the camera
and microphone there and shows the feed a worker publishes for it (`avcall:<my id>`), with its captions and
telemetry from the feed's data channel.

The browser never talks to Janus directly: `/janus` is a proxy of Janus' HTTP API behind the request guard of
the page server (app/pages.py: host name, Origin, body size) and its token (janus.js sends it as `token`), and it lets
through only what a participant needs: sessions, the VideoRoom plugin, and the VideoRoom requests to join,
publish, subscribe and leave, always in this page's room. janus.js is served from Debian's
libjs-janus-gateway (nothing is fetched from the internet); `/cluster` is the controller's status (JSON).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from avcall.app.janus import VIDEOROOM, janus_js
from avcall.app.pages import error, page, static_text, token_ok

JANUS_VERBS = {"create", "attach", "message", "trickle", "keepalive", "detach", "destroy", "hangup"}
ROOM_REQUESTS = {"join", "publish", "configure", "start", "unpublish", "leave", "listparticipants", "pause",
                 "subscribe", "unsubscribe", "update"}
LONG_POLL_S = 40.0


def add_room_routes(app: web.Application, token: str | None, janus_url: str, room: int, enhancers: tuple[str, ...],
                    enhance: str, status: Callable[[], dict] | None = None) -> None:
    """Adds /room (its controls offer `enhancers`, `enhance` selected), its scripts, the /janus proxy and (with
    `status`) /cluster to a page server's `app` (pages.guarded_app), behind its `token`."""
    janus_url = janus_url.rstrip("/")
    http: dict[str, aiohttp.ClientSession] = {}

    def allowed(given: str | None) -> bool:
        return token_ok(token, given)

    async def client() -> aiohttp.ClientSession:
        if "s" not in http:
            http["s"] = aiohttp.ClientSession()
        return http["s"]

    async def room_page(request: web.Request) -> web.Response:
        return web.Response(text=page("room.html", enhancers, enhance).replace("<!--room-->", str(int(room))),
                            content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        if request.match_info["name"] == "room.js":
            return web.Response(text=static_text("room.js"), content_type="application/javascript")
        found = janus_js()
        if found is None:
            return error(404, "janus.js is not installed (Debian: apt-get install libjs-janus-gateway)")
        return web.Response(text=found.read_text(), content_type="application/javascript")

    async def relay(method: str, url: str, timeout_s: float, **kwargs) -> web.Response:
        """Janus' answer as it came, or 502 when it does not answer."""
        session = await client()
        try:
            async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs) as reply:
                return web.json_response(await reply.json(content_type=None), status=reply.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            return error(502, f"Janus did not answer: {type(err).__name__}")

    async def proxy_post(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            return error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        if not allowed(body.pop("token", None) or request.headers.get("X-Avcall-Token")):
            return error(403, "missing or wrong token")
        verb = body.get("janus")
        if verb not in JANUS_VERBS:
            return error(403, f"janus request {verb!r} is not for this page")
        if verb == "attach" and body.get("plugin") != VIDEOROOM:
            return error(403, "only the VideoRoom plugin")
        if verb == "message":
            msg = body.get("body")
            if not isinstance(msg, dict) or msg.get("request") not in ROOM_REQUESTS:
                return error(403, "this VideoRoom request is not for this page")
            if "room" in msg and msg["room"] != room:
                return error(403, f"this page's room is {room}")
        tail = "".join(f"/{int(part)}" for part in (request.match_info.get("session"),
                                                     request.match_info.get("handle")) if part)
        return await relay("POST", janus_url + tail, 15, json=body)

    async def proxy_poll(request: web.Request) -> web.Response:
        if not allowed(request.query.get("token") or request.headers.get("X-Avcall-Token")):
            return error(403, "missing or wrong token")
        params = {k: v for k, v in request.query.items() if k in ("maxev", "rid") and v.isdigit()}
        return await relay("GET", f"{janus_url}/{int(request.match_info['session'])}", LONG_POLL_S, params=params)

    async def cluster(request: web.Request) -> web.Response:
        if not allowed(request.query.get("token") or request.headers.get("X-Avcall-Token")):
            return error(403, "missing or wrong token")
        return web.json_response(status() if status else {})

    async def close(app) -> None:
        if "s" in http:
            await http["s"].close()

    app.router.add_get("/room", room_page)
    app.router.add_get("/room/{name:(room|janus)\\.js}", script)
    app.router.add_post("/janus", proxy_post)
    app.router.add_post(r"/janus/{session:\d+}", proxy_post)
    app.router.add_post(r"/janus/{session:\d+}/{handle:\d+}", proxy_post)
    app.router.add_get(r"/janus/{session:\d+}", proxy_poll)
    if status is not None:
        app.router.add_get("/cluster", cluster)
    app.on_cleanup.append(close)
