"""`avcall worker`: one call through a Janus VideoRoom.

The worker subscribes (aiortc) to one participant's feed in the room, runs the call that
`pipelines/call.build_call` makes for it (as each peer of `avcall serve` does: the same config, the same
WebRTC sources and sinks) and publishes the result back into the room as a feed of its own, shown as
`avcall:<participant's id>`: the enhanced voice, the video with the lip tracking drawn, and a data channel
"avcall" with the captions, the other events and telemetry twice a second. It ends when the participant
unpublishes or leaves, when its subscription hangs up, or when `stop()` is called.

The scheduler (app/cluster.py) runs up to `--calls-per-worker` `RoomCall`s at once inside one Ray actor (one
process: they share its model sessions); the command runs one on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

from avcall.app.janus import JanusError, JanusSession
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.errors import InputError

DISPLAY_PREFIX = "avcall:"  # the display name of a worker's feed: avcall:<the participant's feed id>
TELEMETRY_EVERY_S = 0.5
MEDIA_TIMEOUT_S = 15.0  # the participant's media stopped this long: the call ends


@dataclass
class WorkerConfig:
    janus: str  # Janus' HTTP API, e.g. http://127.0.0.1:8088/janus
    room: int
    feed: int  # the participant's publisher id in the room
    publisher_id: int | None = None  # the id to publish as (the controller picks it, to kick it on failover)
    enhance: bool | str = True  # or a noise suppressor's name (pipelines/suppressors: "avcall-ao", ...)
    captions: bool = True
    overlay: bool = True
    lip_gate: bool = True  # the lip gate in the call (the room page's "Only my voice" toggle switches it)


def shared_suppressor(enabled: bool | str):
    """A stream of the default noise suppressor, or of the one `enabled` names (its sessions made once per
    process, shared by every call of this worker process; a model with a batch axis, avcall-ao, is stepped
    for all of them in one batched call per hop); None when off or when none ships."""
    if not enabled:
        return None
    from avcall.pipelines.suppressors import available, open_suppressor

    if isinstance(enabled, str):
        return open_suppressor(enabled)
    shipped = available()
    return open_suppressor(shipped[0]) if shipped else None


def warm_up(enhance: bool | str = True) -> float:
    """Loads what a call needs before the first one comes (imports, the suppressor's sessions): seconds."""
    started = time.monotonic()
    import avcall.pipelines.call  # noqa: F401
    import avcall.pipelines.sinks.webrtc  # noqa: F401
    import avcall.pipelines.sources.webrtc  # noqa: F401
    import avcall.pipelines.stages.captioner  # noqa: F401
    import avcall.pipelines.stages.face_tracker  # noqa: F401

    shared_suppressor(enhance)
    return time.monotonic() - started


@dataclass
class CallState:
    """What a running call reports (the controller and the bench read it)."""

    feed: int
    pid: int = field(default_factory=os.getpid)
    publisher_id: int | None = None
    subscribed_at: float | None = None  # time.time() of each step
    published_at: float | None = None
    connected_at: float | None = None
    ended: str | None = None
    audio_delay_ms: float | None = None
    incidents: dict = field(default_factory=dict)


class RoomCall:
    """One participant's call: Janus subscription in, build_call's pipeline, Janus publication out."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.state = CallState(cfg.feed, publisher_id=cfg.publisher_id)
        self.clock = SessionClock()
        self.session: JanusSession | None = None
        self.pc_in = self.pc_out = self.channel = None
        self.tracks: dict[str, object] = {}
        self.pipeline = None
        self.audio_out = self.video_out = None
        self._stop = asyncio.Event()
        self._control = None  # the rate limit of the participant's toggles
        self.suppressor = None
        self.enhance, self.overlay = "off", cfg.overlay
        self.stages_state: dict = {}  # the stages' last reports: face seen, the enhancer's mode, levels

    # --- Janus and aiortc -------------------------------------------------------------------------------
    async def _subscribe(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from avcall.pipelines.sources.webrtc import tolerate_audio_loss

        self.sub = await self.session.attach()
        data, jsep = await self.sub.send({"request": "join", "ptype": "subscriber", "room": self.cfg.room,
                                          "streams": [{"feed": self.cfg.feed}]}, expect="videoroom")
        if jsep is None:
            raise JanusError(f"subscribing to feed {self.cfg.feed}: no offer came ({data})")
        self.pc_in = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: the SFU is the other end

        @self.pc_in.on("track")
        def on_track(track) -> None:
            if track.kind in ("audio", "video") and track.kind not in self.tracks:
                self.tracks[track.kind] = track
            if track.kind == "audio":
                for receiver in self.pc_in.getReceivers():
                    if receiver.track is track:
                        tolerate_audio_loss(receiver)

        self.pc_in.on("datachannel", lambda channel: channel.on("message", self.on_message))
        await self.pc_in.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
        if "m=application" in jsep["sdp"]:  # the participant's page sends its toggles; Janus relays them to a
            self.pc_in.createDataChannel("JanusDataChannel").on("message", self.on_message)  # channel of ours
        await self.pc_in.setLocalDescription(await self.pc_in.createAnswer())
        await self.sub.send({"request": "start"}, jsep={"type": "answer", "sdp": self.pc_in.localDescription.sdp},
                            expect="started")
        if not self.tracks:
            raise JanusError(f"feed {self.cfg.feed} sends neither audio nor video")
        self.state.subscribed_at = time.time()

    def _build(self) -> None:
        """The call, as `avcall serve` builds a peer's (app/serve.Peer.build), from the one builder."""
        from avcall.pipelines.call import CallConfig, build_webrtc_call

        suppressor = self.suppressor = shared_suppressor(self.cfg.enhance) if "audio" in self.tracks else None
        self.enhance = suppressor.name if suppressor is not None else "off"
        cfg = CallConfig(max_faces=1, enhance=suppressor, captions=self.cfg.captions, overlay=self.cfg.overlay,
                         meters=True, lip_gate=True if self.cfg.lip_gate else "off")
        # how the call stands, from the stages' state events (Stage.report), as a served peer folds them in
        built = build_webrtc_call(cfg, self.tracks, self.clock, self.send, on_state=self.stages_state.update)
        self.pipeline, self.audio_out, self.video_out = built.pipeline, built.audio_out, built.video_out

    async def _publish(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self.pub = await self.session.attach()
        join = {"request": "join", "ptype": "publisher", "room": self.cfg.room,
                "display": f"{DISPLAY_PREFIX}{self.cfg.feed}"}
        if self.cfg.publisher_id is not None:
            join["id"] = self.cfg.publisher_id
        data, _ = await self.pub.send(join, expect="id")
        self.state.publisher_id = data["id"]
        self.pc_out = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for track in (self.audio_out, self.video_out):
            if track is not None:
                self.pc_out.addTrack(track)
        self.channel = self.pc_out.createDataChannel("avcall")

        @self.pc_out.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc_out.connectionState == "connected" and self.state.connected_at is None:
                self.state.connected_at = time.time()

        await self.pc_out.setLocalDescription(await self.pc_out.createOffer())
        _, answer = await self.pub.send({"request": "publish", "display": join["display"]},
                                jsep={"type": "offer", "sdp": self.pc_out.localDescription.sdp},
                                expect="configured")
        if answer is None:
            raise JanusError("publishing: Janus sent no answer")
        await self.pc_out.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        self.state.published_at = time.time()
        self.pub.events = self.sub.events  # the room's news (who left) comes to the publisher handle: one queue

    # --- the call ---------------------------------------------------------------------------------------
    def on_message(self, message) -> None:
        """The participant's toggles, as the served page sends them ({"type": "control", "enhance": "on" or
        "off", "overlay": bool, "lip_gate": bool}); anything else, or more than CONTROL_RATE a second, is
        ignored."""
        from avcall.app.serve import CONTROL_BURST, CONTROL_RATE, RateLimit

        if self._control is None:
            self._control = RateLimit(CONTROL_RATE, CONTROL_BURST)
        if not self._control.allow() or not isinstance(message, str) or len(message) > 4096:
            return
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if not isinstance(msg, dict) or msg.get("type") != "control" or self.pipeline is None:
            return
        switch = {}
        if msg.get("enhance") in ("on", "off") and self.suppressor is not None:
            self.enhance = switch["enhance"] = self.suppressor.name if msg["enhance"] == "on" else "off"
        if isinstance(msg.get("overlay"), bool):
            self.overlay = switch["overlay"] = msg["overlay"]
        if isinstance(msg.get("lip_gate"), bool):
            switch["lip_gate"] = msg["lip_gate"]
        if switch:
            asyncio.ensure_future(self.pipeline.control(switch))

    def send(self, message: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message)

    def telemetry(self) -> dict:
        delays = sorted(self.audio_out.delays_ms) if self.audio_out is not None else []
        self.state.audio_delay_ms = delays[len(delays) // 2] if delays else None
        self.state.incidents = self.pipeline.incidents.summary()["counts"] if self.pipeline else {}
        return {"type": "telemetry", "worker_pid": self.state.pid, "feed": self.cfg.feed,
                "audio_delay_ms": self.state.audio_delay_ms, "face": bool(self.stages_state.get("face")),
                "enhance": self.stages_state.get("enhance", self.enhance), "overlay": self.overlay,
                "lip_gate": self.stages_state.get("lip_gate", "unavailable"),
                "lip_gate_reason": self.stages_state.get("lip_gate_reason"), "incidents": self.state.incidents}

    async def _telemetry(self) -> None:
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            self.send(json.dumps(self.telemetry()))

    async def _watch(self) -> None:
        """Ends the call when the participant goes (their feed unpublished, the subscription hung up) or their
        media stops for MEDIA_TIMEOUT_S."""
        while True:
            try:
                event = await asyncio.wait_for(self.sub.events.get(), 1.0)
            except asyncio.TimeoutError:
                last = self.pipeline.last_input if self.pipeline else None
                if last is not None and time.monotonic() - last > MEDIA_TIMEOUT_S:
                    self.state.ended = "media stopped"
                    return
                if self.session.closed.is_set():
                    self.state.ended = "janus session gone"
                    return
                continue
            data = event.get("plugindata", {}).get("data", {})
            if data.get("unpublished") == self.cfg.feed or data.get("leaving") == self.cfg.feed:
                self.state.ended = "participant gone (left the room)"  # told to our publisher handle
                return
            if event.get("janus") in ("hangup", "detached"):
                self.state.ended = ("participant gone (subscription hung up)" if event.get("sender") == self.sub.id
                                    else "our feed hung up")
                return

    async def run(self) -> CallState:
        """The call from subscription to the participant's leaving (or `stop()`)."""
        self.session = await JanusSession(self.cfg.janus).open()
        tasks: list[asyncio.Task] = []
        try:
            await self._subscribe()
            self._build()
            await self._publish()
            run = asyncio.create_task(self.pipeline.run(), name=f"call-{self.cfg.feed}")
            tasks = [run, asyncio.create_task(self._telemetry()), asyncio.create_task(self._watch()),
                     asyncio.create_task(self._stop.wait())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if run.done() and not run.cancelled() and run.exception() is not None:
                self.state.ended = f"pipeline stopped: {run.exception()}"
            self.state.ended = self.state.ended or "stopped"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for track in (self.audio_out, self.video_out):
                if track is not None:
                    track.stop()
            for pc in (self.pc_in, self.pc_out):
                if pc is not None:
                    await pc.close()
            await self.session.close()
        return self.state

    def stop(self) -> None:
        self._stop.set()


def cmd_worker(args) -> int:
    """`avcall worker --janus URL --room R --feed ID`: one call, until the participant leaves or Ctrl-C."""
    cfg = WorkerConfig(janus=args.janus, room=args.room, feed=args.feed, enhance=not args.no_enhance,
                       captions=not args.no_captions, overlay=not args.no_overlay, lip_gate=args.lip_gate == "on")
    warm_up(cfg.enhance)
    print(f"avcall worker: subscribing to feed {cfg.feed} in room {cfg.room} at {cfg.janus}", flush=True)
    try:
        state = asyncio.run(RoomCall(cfg).run())
    except (JanusError, OSError) as err:  # no such room or feed, Janus down: one line, exit status 2
        raise InputError(f"janus at {cfg.janus}: {err}") from None
    print(json.dumps({"feed": state.feed, "publisher_id": state.publisher_id, "ended": state.ended}))
    return 0


def add_parser(commands) -> None:
    w = commands.add_parser("worker", help="process one participant of a Janus VideoRoom and publish the result",
                            description="Join a Janus VideoRoom over its HTTP API, subscribe to one participant's "
                            "feed, run the call on it (face tracking, the noise suppressor, captions, the lip "
                            "tracking drawn) and publish the result into the same room as the feed "
                            f"'{DISPLAY_PREFIX}<FEED>': the enhanced voice, the annotated video and a data "
                            "channel 'avcall' with captions and telemetry (JSON). Runs until the participant "
                            "leaves. `avcall cluster up` runs workers like this one under Ray, one per "
                            "participant.")
    w.add_argument("--janus", required=True, metavar="URL", help="Janus' HTTP API, e.g. http://127.0.0.1:8088/janus")
    w.add_argument("--room", type=int, required=True, help="the VideoRoom's number")
    w.add_argument("--feed", type=int, required=True, help="the participant's publisher id in the room")
    w.add_argument("--no-enhance", action="store_true", help="pass the voice through (no noise suppressor)")
    w.add_argument("--no-captions", action="store_true", help="no captions")
    w.add_argument("--no-overlay", action="store_true", help="send the video without the lip tracking drawn")
    w.add_argument("--lip-gate", choices=["on", "off"], default="on",
                   help="on (default): another voice is held back while the participant's lips are still; off")
