"""`avcall serve`: the pipeline behind a local web page, over WebRTC (aiohttp + aiortc).

The page (app/static/) sends the camera and microphone; the offer is POSTed as JSON to `/offer`, as in
aiortc's server example. Each peer gets its own pipeline (face tracker, lip features, speech enhancer,
captioner, overlay) fed by its tracks; the enhanced voice and the video go back on the same connection, and
captions and telemetry on the data channel "avcall", which also carries the page's toggles. The emotion
reader (when its weights ship) is in every peer's pipeline but off: it reads nothing until the page opts in
(`{"type": "control", "emotion": true}`); its readings go to that page only and are never written. The
talking face (when its weights ship) is there too, off: `{"avatar": "voice"}` sends the bundled portrait
speaking with the voice instead of the camera, `"reenact"` the portrait moved by the camera's face through
the landmark codec.

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
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources

from aiohttp import web

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.errors import InputError

AVATAR_MODES = ("off", "voice", "reenact")
MAX_BODY = 256 * 1024  # an SDP offer is a few kB
MAX_MEDIA = 3  # media sections an offer may hold: audio, video and the data channel
STATIC_FILES = {"client.js": "application/javascript", "style.css": "text/css"}
TELEMETRY_EVERY_S = 0.5
CONNECT_TIMEOUT_S = 30.0
WATCH_EVERY_S = 0.5
CONTROL_RATE, CONTROL_BURST = 20.0, 40  # data-channel messages a second (the page sends a few a minute)


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_peers: int = 4
    stun: list[str] = field(default_factory=list)
    enhance: bool = True  # load the enhancer (when its weights are shipped)
    captions: bool = True
    language: str = "en"  # the captions' language (a Whisper code, or "auto": detected on the first line)
    lip_gate: bool = True  # each call has the lip gate (the page's "Only my voice" toggle switches it)
    peer_timeout_s: float = 10.0  # a connected peer whose media stops this long is gone: it is closed
    janus: str | None = None  # a Janus' HTTP API: the page gets its room mode at /room (app/room.py)
    room: int = 1234


@dataclass
class RateLimit:
    """A token bucket: `rate` messages a second on average, bursts of up to `burst`."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


class Peer:
    """One browser: its RTCPeerConnection, the pipeline over its tracks, its data channel."""

    def __init__(self, server: Server, pc, enhance: str, overlay: bool, lip_gate: bool = True) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.server, self.pc = server, pc
        self.clock = SessionClock()
        self.channel = None
        self.tracks: dict[str, object] = {}
        self.enhance_mode, self.overlay, self.lip_gate = enhance, overlay, lip_gate
        self.pipeline = None
        self.tasks: list[asyncio.Task] = []
        self._closing: asyncio.Future | None = None
        self.control = RateLimit(CONTROL_RATE, CONTROL_BURST)
        self.messages_dropped = 0  # data-channel messages over the rate limit
        self.audio_out = self.video_out = None
        self.call = None  # the call's stages, from the one builder (pipelines/call.py)
        # how the call stands, from the stages' state events (Stage.report): meters, face, modes
        self.state: dict = {"level_in_db": None, "level_out_db": None, "face": False, "enhance": "off",
                            "sync_offset_ms": None, "emotion": "unavailable", "avatar": "unavailable",
                            "lip_gate": "unavailable", "lip_gate_reason": None}

    # --- the pipeline ---------------------------------------------------------------------------------
    def build(self) -> None:
        """The peer's call from the one builder (pipelines/call.py), between the WebRTC tracks and the page."""
        from avcall.pipelines.call import CallConfig, build_webrtc_call

        server, video = self.server, "video" in self.tracks
        suppressor = server.open_enhancer() if "audio" in self.tracks else None
        cfg = CallConfig(max_faces=1, enhance=suppressor, enhance_mode=self.enhance_mode,
                         captions=server.cfg.captions, language=server.cfg.language, emotion=server.emotion_models is not None, emotion_on=False,
                         emotion_models=server.emotion_models, avatar="off" if video and server.has_avatar() else None,
                         overlay=self.overlay, meters=True, lip_gate=self.lip_gate if server.cfg.lip_gate else "off")
        built = build_webrtc_call(cfg, self.tracks, self.clock, self.send, on_state=self.state.update)
        self.call, self.pipeline = built.call, built.pipeline
        self.audio_out, self.video_out = built.audio_out, built.video_out
        for track in (self.audio_out, self.video_out):
            if track is not None:
                self.pc.addTrack(track)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(), name=f"peer-{self.id}"),
                      asyncio.create_task(self._telemetry(), name=f"peer-{self.id}-telemetry"),
                      asyncio.create_task(self._watchdog(), name=f"peer-{self.id}-watchdog")]

    async def _run(self) -> None:
        try:
            await self.pipeline.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the call ends, the server goes on
            self.send(json.dumps({"type": "status", "text": f"pipeline stopped: {err}"}))
        finally:
            asyncio.ensure_future(self.close())

    async def _watchdog(self) -> None:
        """A peer that never sends media (CONNECT_TIMEOUT_S) or stops sending it for `peer_timeout_s` (gone
        without closing: a crash, a lost network) is closed: its pipeline, threads and sockets are freed."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            last = self.pipeline.last_input if self.pipeline else None
            if last is None and time.monotonic() - started > CONNECT_TIMEOUT_S:
                break
            if last is not None and time.monotonic() - last > self.server.cfg.peer_timeout_s:
                silent = round(time.monotonic() - last, 1)
                self.pipeline.incidents.note("peer_timeout", self.clock.now(), silent_s=silent)
                break
        await self.close()

    async def _telemetry(self) -> None:
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            self.send(json.dumps(self.telemetry()))

    def telemetry(self) -> dict:
        stages = {}
        for name, summary in (self.pipeline.telemetry() if self.pipeline else {}).items():
            service = summary.get("service_ms") or {}
            if service:
                stages[name] = {"p50_ms": service.get("p50"), "p95_ms": service.get("p95")}
        delays = sorted(self.audio_out.delays_ms) if self.audio_out is not None else []
        return {"type": "telemetry", "stages": stages,
                "audio_delay_ms": delays[len(delays) // 2] if delays else None,
                "audio_delay_p95_ms": delays[int(len(delays) * 0.95)] if delays else None,
                "levels": {"in_db": self.state["level_in_db"], "out_db": self.state["level_out_db"]},
                "face": self.state["face"], "enhance": self.state["enhance"],
                "sync_offset_ms": self.state["sync_offset_ms"],
                "overlay": self.overlay, "peers": len(self.server.peers),
                "incidents": self.pipeline.incidents.summary()["counts"] if self.pipeline else {},
                "messages_dropped": self.messages_dropped,
                "emotion": self.state["emotion"], "avatar": self.state["avatar"],
                "lip_gate": self.state["lip_gate"], "lip_gate_reason": self.state["lip_gate_reason"],
                "avatar_codec_bytes_per_frame": self._codec_bytes_per_frame()}

    def _codec_bytes_per_frame(self) -> float | None:
        counts = self.pipeline.incidents.summary()["counts"] if self.pipeline else {}
        frames = counts.get("avatar_codec_frames")
        return round(counts["avatar_codec_bytes"] / frames, 2) if frames else None

    # --- the data channel ---------------------------------------------------------------------------
    def send(self, message: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message)

    def on_message(self, message) -> None:
        """The page's toggles; anything malformed is ignored, and past CONTROL_RATE a second, anything at all
        (counted, and said once)."""
        if not self.control.allow():
            self.messages_dropped += 1
            if self.messages_dropped == 1:
                self.send(json.dumps({"type": "status", "text": "too many data-channel messages: some are ignored"}))
            return
        try:
            msg = json.loads(message) if isinstance(message, str) and len(message) < 4096 else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "control":
            return
        switch = {}  # what the page asked for, checked here; the stages get it as a control frame
        if msg.get("enhance") in self.server.enhance_modes:
            self.enhance_mode = switch["enhance"] = msg["enhance"]
        if isinstance(msg.get("overlay"), bool):
            self.overlay = switch["overlay"] = msg["overlay"]
        if isinstance(msg.get("lip_gate"), bool):
            self.lip_gate = switch["lip_gate"] = msg["lip_gate"]
            if not self._has("lip_gate") and msg["lip_gate"]:
                self.send(json.dumps({"type": "status", "text": "the lip gate is not available: it needs the "
                                      "camera (and the server's --lip-gate on)"}))
        if msg.get("avatar") in AVATAR_MODES:
            switch["avatar"] = msg["avatar"]
            if not self._has("avatar") and msg["avatar"] != "off":
                self.send(json.dumps({"type": "status", "text": "the talking face is not available: no "
                                      "talking-face weights on this server, or no camera track"}))
        if isinstance(msg.get("emotion"), bool):
            switch["emotion"] = msg["emotion"]
            if not self._has("emotion") and msg["emotion"]:
                self.send(json.dumps({"type": "status", "text": "emotion reading is not available: no emotion "
                                      "weights on this server"}))
        if switch and self.pipeline is not None:
            asyncio.ensure_future(self.pipeline.control(switch))

    def _has(self, role: str) -> bool:
        """Whether the call was built with that stage (the builder's roles: "avatar", "emotion", ...)."""
        return self.call is not None and role in self.call.roles

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
            for track in (self.audio_out, self.video_out):
                if track is not None:
                    track.stop()
            await self.pc.close()
        finally:
            self.server.closing.discard(self)


class Server:
    def __init__(self, cfg: ServeConfig) -> None:
        if not _is_loopback(cfg.host) and not cfg.token:
            raise InputError(f"--host {cfg.host} opens the camera and microphone to the network: give --token "
                             "(the page must present it: http://HOST:PORT/?token=...)")
        self.cfg = cfg
        self.peers: dict[str, Peer] = {}
        self.closing: set[Peer] = set()  # peers on their way out
        self.enhance_modes = ("off",)  # what the page's selector offers: "off" and the backends that ship
        self.enhancer_note = ""
        self.emotion_models = None  # the emotion nets' sessions, for all peers

    # --- shared models ----------------------------------------------------------------------------------
    def load_models(self) -> None:
        self._load_emotion()
        if not self.cfg.enhance:
            return
        from avcall.pipelines.suppressors import available, open_suppressor

        backends = available()
        if not backends:
            self.enhancer_note = "no noise suppressor ships on this server: the voice is passed through"
            return
        open_suppressor(backends[0])  # weights checked and sessions made once, before the first call
        self.enhance_modes = ("off", *backends)

    def has_avatar(self) -> bool:
        """Whether the talking face ships (the page's "send" picker offers the portrait)."""
        from avcall.pipelines.runtime import shipped
        from avcall.pipelines.nets.voice_to_lips import WEIGHTS

        return shipped(WEIGHTS)

    def open_enhancer(self):
        """A new stream of the default suppressor (its sessions shared by all peers), None without one."""
        if len(self.enhance_modes) < 2:
            return None
        from avcall.pipelines.suppressors import open_suppressor

        return open_suppressor(self.enhance_modes[1])

    def _load_emotion(self) -> None:
        from avcall.app.process import emotion_shipped

        if emotion_shipped():
            from avcall.pipelines.nets.emotion import EmotionModels

            self.emotion_models = EmotionModels()

    # --- routes -------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_post("/offer", self.offer)
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Before any route: requests for another host name (DNS rebinding), from another site's page
        (Origin, Sec-Fetch-Site) and bodies too large (413) or where none belongs (400) are refused."""
        host = request.host.rsplit(":", 1)[0].strip("[]")
        if _is_loopback(self.cfg.host) and not _is_loopback(host):
            return _error(403, f"this server answers to 127.0.0.1 or localhost, not {host!r}")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "cross-origin request refused")
        site = request.headers.get("Sec-Fetch-Site", "same-origin")
        if site not in ("same-origin", "none") and not _opens_the_page(request):
            return _error(403, "cross-site request refused")
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        if request.method in ("GET", "HEAD") and (request.content_length or request.body_exists):
            return _error(400, "this route takes no body")
        return await handler(request)

    async def index(self, request: web.Request) -> web.Response:
        from avcall.pipelines.suppressors import describe

        options = "".join(f'<option value="{m}"{" selected" if i == 1 else ""}>{"off" if m == "off" else describe(m)}'
                          f"</option>" for i, m in enumerate(self.enhance_modes))
        return web.Response(text=_static_text("index.html").replace("<!--enhance-options-->", options),
                            content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:  # a fixed list: no path ever reaches the file system
            raise web.HTTPNotFound()
        return web.Response(text=_static_text(name), content_type=STATIC_FILES[name])

    async def offer(self, request: web.Request) -> web.Response:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        try:
            params = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            return _error(400, "the body is not JSON")
        if not isinstance(params, dict):
            return _error(400, "the body must be a JSON object")
        if self.cfg.token:
            given = str(params.get("token") or request.headers.get("X-Avcall-Token") or "")
            if not hmac.compare_digest(given.encode(), self.cfg.token.encode()):
                return _error(403, "missing or wrong token")
        sdp, kind = params.get("sdp"), params.get("type")
        if kind != "offer" or not isinstance(sdp, str) or not sdp.startswith("v=0"):
            return _error(400, 'expected {"type": "offer", "sdp": "v=0..."}')
        problem = _sdp_problem(sdp)
        if problem:
            return _error(400, f"cannot use this offer: {problem}")
        enhance = params.get("enhance", self.enhance_modes[1] if len(self.enhance_modes) > 1 else "off")
        if enhance not in self.enhance_modes:
            return _error(400, f"enhance must be one of {', '.join(self.enhance_modes)}")
        if len(self.peers) >= self.cfg.max_peers:
            return _error(503, f"too many peers: this server takes {self.cfg.max_peers} at once (--max-peers)")
        ice = [RTCIceServer(urls=url) for url in self.cfg.stun]  # none by default: nothing leaves the machine
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        peer = Peer(self, pc, enhance, bool(params.get("overlay", True)), bool(params.get("lip_gate", True)))
        self.peers[peer.id] = peer

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label == "avcall" and peer.channel is None:
                peer.channel = channel
                channel.on("message", peer.on_message)
                if self.enhancer_note:
                    channel.on("open", lambda: peer.send(json.dumps({"type": "status", "text": self.enhancer_note})))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind in ("audio", "video") and track.kind not in peer.tracks:
                peer.tracks[track.kind] = track
            if track.kind == "audio":
                from avcall.pipelines.sources.webrtc import tolerate_audio_loss

                for receiver in pc.getReceivers():
                    if receiver.track is track:
                        tolerate_audio_loss(receiver)

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
            return _error(400, f"cannot use this offer: {err}")
        peer.start()
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                  "peer": peer.id})

    async def _on_shutdown(self, app) -> None:
        peers = [*self.peers.values(), *self.closing]
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


def _opens_the_page(request: web.Request) -> bool:
    """A link on another site to the page itself (a top-level navigation): harmless, the call starts only
    when the user starts it there. Anything else from another site (a fetch, a script tag) is refused."""
    return (request.method == "GET" and request.path == "/" and request.headers.get("Sec-Fetch-Mode") == "navigate"
            and request.headers.get("Sec-Fetch-Dest", "document") == "document")


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


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _static_text(name: str) -> str:
    return resources.files("avcall.app").joinpath("static", name).read_text()


def run_server(cfg: ServeConfig) -> None:
    server = Server(cfg)
    server.load_models()
    url = f"http://{cfg.host}:{cfg.port}/" + (f"?token={cfg.token}" if cfg.token else "")
    print(f"avcall serve: open {url} in Chromium or Firefox (Ctrl-C to stop)")
    if server.enhancer_note:
        print(f"  note: {server.enhancer_note}")
    app = server.app()
    if cfg.janus:  # the room mode: the page in a Janus room, behind the same guard and token
        from avcall.app.room import add_room_routes

        add_room_routes(app, server, cfg.janus, cfg.room)
        print(f"  room mode: http://{cfg.host}:{cfg.port}/room (Janus room {cfg.room} at {cfg.janus})")
    web.run_app(app, host=cfg.host, port=cfg.port, print=None)


def new_token() -> str:
    return secrets.token_urlsafe(18)

