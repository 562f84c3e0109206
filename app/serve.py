"""`avcall serve`: the pipeline behind a local web page, over WebRTC (aiohttp + aiortc).

The page (app/static/) sends the camera and microphone; the offer is POSTed as JSON to `/offer`, as in
aiortc's server example. Each peer gets its own pipeline (face tracker, lip features, speech enhancer,
captioner, overlay) fed by its tracks; the enhanced voice goes back on the same connection, and captions, the
face's landmarks (the page draws the overlay over its camera frames) and telemetry on the data channel "avcall",
which also carries the page's toggles (the call and its
channel: app/call_channel.py, the same for a room worker's call). The emotion reader (when its weights ship)
is in every peer's pipeline but off: it reads nothing until the page opts in (`{"type": "control", "emotion":
true}`); its readings go to that page only and are never written. The talking face (when its weights ship)
is there too, off: `{"avatar": "voice"}` sends the bundled portrait speaking with the voice instead of the
camera, `"reenact"` the portrait moved by the camera's face through the landmark codec.

Safe defaults: bound to 127.0.0.1; another host needs a token that the page presents (compared in constant
time); at most `max_peers` peers (a clear 503 past it); no STUN server unless one is configured. Hostile
requests get a 4xx before anything reaches a pipeline: a body over MAX_BODY on any route (413), a body on a
page route, malformed JSON or a bogus SDP (400), a request for another host name (DNS rebinding) or from
another site's page (Origin, Sec-Fetch-Site: 403); static files come from a fixed list, never a path. The
data channel takes at most CONTROL_RATE messages a second (the rest are dropped and counted). A peer that
leaves, fails, never connects or goes silent without closing (`peer_timeout_s` with no media) frees its
tasks, threads and state.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from avcall.app.call_channel import CallChannel, SharedModels, page_call
from avcall.app.pages import MAX_BODY, error, guarded_app, is_loopback, page, token_ok
from avcall.pipelines.errors import InputError
from avcall.pipelines.features import default_enhancer

AVATAR_MODES = ("off", "voice", "reenact")
MAX_MEDIA = 3  # media sections an offer may hold: audio, video and the data channel


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_peers: int = 4
    stun: list[str] = field(default_factory=list)
    enhance: str = field(default_factory=default_enhancer)  # what a call starts with: a suppressor, or "off"
    captions: bool = True
    language: str = "en"  # the captions' language (a Whisper code, or "auto": detected on the first line)
    lip_gate: bool = True  # each call has the lip gate (the page's "Only my voice" toggle switches it)
    peer_timeout_s: float = 10.0  # a connected peer whose media stops this long is gone: it is closed
    janus: str | None = None  # a Janus' HTTP API: the page gets its room mode at /room (app/room.py)
    room: int = 1234


class Peer:
    """One browser: its RTCPeerConnection and the call over its tracks (app/call_channel.py)."""

    def __init__(self, server: Server, pc, enhance: str, overlay: bool, lip_gate: bool = True) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.server, self.pc = server, pc
        self.line = CallChannel(server.models.enhancers)
        self.tracks: dict[str, object] = {}
        self.enhance, self.overlay, self.lip_gate = enhance, overlay, lip_gate
        self.tasks: list[asyncio.Task] = []
        self._closing: asyncio.Future | None = None

    def build(self) -> None:
        """The peer's call, between the WebRTC tracks and the page; its outgoing tracks join the connection."""
        cfg = self.server.cfg
        self.line.build(page_call(self.server.models, self.enhance, overlay=self.overlay, captions=cfg.captions,
                                  language=cfg.language, lip_gate=self.lip_gate if cfg.lip_gate else "off"),
                        self.tracks)
        for track in (self.line.audio_out, self.line.video_out):
            if track is not None:
                self.pc.addTrack(track)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(), name=f"peer-{self.id}"),
                      asyncio.create_task(self.line.send_telemetry(lambda: {"peers": len(self.server.peers)}),
                                          name=f"peer-{self.id}-telemetry"),
                      asyncio.create_task(self._watchdog(), name=f"peer-{self.id}-watchdog")]

    async def _run(self) -> None:
        try:
            await self.line.pipeline.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the call ends, the server goes on
            self.line.status(f"pipeline stopped: {err}")
        finally:
            asyncio.ensure_future(self.close())

    async def _watchdog(self) -> None:
        """A peer whose media never comes or stops (gone without closing) is closed: its pipeline, threads and
        sockets are freed."""
        await self.line.watchdog(self.server.cfg.peer_timeout_s)
        await self.close()

    async def close(self) -> None:
        """Closes the peer once, whoever asks first; every caller waits until it is closed (the server's
        shutdown too: a peer that was already closing when it came still stops its stages and processes)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self.server.peers.pop(self.id, None)
        self.server.closing.add(self)
        try:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.line.stop_tracks()
            await self.pc.close()
        finally:
            self.server.closing.discard(self)


class Server:
    def __init__(self, cfg: ServeConfig) -> None:
        if not is_loopback(cfg.host) and not cfg.token:
            raise InputError(f"--host {cfg.host} opens the camera and microphone to the network: give --token "
                             "(the page must present it: http://HOST:PORT/?token=...)")
        self.cfg = cfg
        self.peers: dict[str, Peer] = {}
        self.closing: set[Peer] = set()  # peers on their way out
        self.models: SharedModels | None = None
        self.enhance = cfg.enhance  # what a new call starts with

    def load_models(self) -> None:
        """What all peers share, loaded before the first one comes."""
        self.models = SharedModels()
        self.enhance = self.models.starting(self.cfg.enhance)

    # --- routes -------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = guarded_app(self.cfg.host)
        app.router.add_get("/", self.index)
        app.router.add_post("/offer", self.offer)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=page("index.html", self.models.enhancers, self.enhance), content_type="text/html")

    async def offer(self, request: web.Request) -> web.Response:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        try:
            params = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body larger than {MAX_BODY} bytes")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            return error(400, "the body is not JSON")
        if not isinstance(params, dict):
            return error(400, "the body must be a JSON object")
        if not token_ok(self.cfg.token, params.get("token") or request.headers.get("X-Avcall-Token")):
            return error(403, "missing or wrong token")
        sdp, kind = params.get("sdp"), params.get("type")
        if kind != "offer" or not isinstance(sdp, str) or not sdp.startswith("v=0"):
            return error(400, 'expected {"type": "offer", "sdp": "v=0..."}')
        problem = _sdp_problem(sdp)
        if problem:
            return error(400, f"cannot use this offer: {problem}")
        enhance = params.get("enhance", self.enhance)
        if enhance not in self.models.enhancers:
            return error(400, f"enhance must be one of {', '.join(self.models.enhancers)}")
        if len(self.peers) >= self.cfg.max_peers:
            return error(503, f"too many peers: this server takes {self.cfg.max_peers} at once (--max-peers)")
        ice = [RTCIceServer(urls=url) for url in self.cfg.stun]  # none by default: nothing leaves the machine
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        peer = Peer(self, pc, enhance, bool(params.get("overlay", True)), bool(params.get("lip_gate", True)))
        self.peers[peer.id] = peer

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label == "avcall" and peer.line.channel is None:
                peer.line.channel = channel
                channel.on("message", peer.line.on_message)
                if self.models.note:
                    channel.on("open", lambda: peer.line.status(self.models.note))

        pc.on("track", lambda track: peer.line.on_track(pc, track, peer.tracks))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await peer.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not peer.tracks:
                raise ValueError("the offer sends neither audio nor video")
            peer.build()
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as err:  # noqa: BLE001 - aiortc raises many kinds on a bad SDP
            await peer.close()
            return error(400, f"cannot use this offer: {err}")
        peer.start()
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                  "peer": peer.id})

    async def _on_shutdown(self, app) -> None:
        peers = [*self.peers.values(), *self.closing]
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


def _sdp_problem(sdp: str) -> str | None:
    """What makes an offer unusable before any connection is made for it (None: aiortc may judge the rest)."""
    from aiortc.sdp import SessionDescription

    try:
        media = SessionDescription.parse(sdp).media
    except Exception as err:  # noqa: BLE001 - the parser raises many kinds on garbage
        return f"the SDP does not parse ({type(err).__name__})"
    if not media:
        return "the SDP holds no media section"
    if len(media) > MAX_MEDIA:
        return f"the SDP holds {len(media)} media sections (at most {MAX_MEDIA}: audio, video, data)"
    kinds = [m.kind for m in media]
    if any(k not in ("audio", "video", "application") for k in kinds) or len(set(kinds)) < len(kinds):
        return f"unexpected media sections: {', '.join(kinds)}"
    return None


def run_server(cfg: ServeConfig) -> None:
    server = Server(cfg)
    server.load_models()
    url = f"http://{cfg.host}:{cfg.port}/" + (f"?token={cfg.token}" if cfg.token else "")
    print(f"avcall serve: open {url} in Chromium or Firefox (Ctrl-C to stop)")
    if server.models.note:
        print(f"  note: {server.models.note}")
    app = server.app()
    if cfg.janus:  # the room mode: the page in a Janus room, behind the same guard and token
        from avcall.app.room import add_room_routes

        add_room_routes(app, cfg.token, cfg.janus, cfg.room, server.models.enhancers, server.enhance)
        print(f"  room mode: http://{cfg.host}:{cfg.port}/room (Janus room {cfg.room} at {cfg.janus})")
    web.run_app(app, host=cfg.host, port=cfg.port, print=None)


