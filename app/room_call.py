"""One participant's call through a Janus VideoRoom (what `avcall worker` runs, and each slot of a cluster's worker).

The worker subscribes (aiortc) to one participant's feed in the room, runs the call that
`pipelines/call.build_call` makes for it (as each peer of `avcall serve` does: the same config, the same
WebRTC sources and sinks) and publishes the result back into the room as a feed of its own, shown as
`avcall:<participant's id>`: the enhanced voice and a data channel "avcall" with the captions, the face's
landmarks (the room page draws the lip tracking over the participant's own video), the other events and
telemetry twice a second; video only while the talking face is on (its portrait). It ends when the participant
unpublishes or leaves, when its subscription hangs up, or when `stop()` is called.

The scheduler (app/cluster.py) runs up to `--calls-per-worker` `RoomCall`s at once inside one Ray actor (one
process: they share its model sessions); the command runs one on its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from avcall.app.call_channel import CallChannel, SharedModels, page_call
from avcall.app.janus import DISPLAY_PREFIX, JanusError, JanusSession
from avcall.pipelines.features import default_enhancer

MEDIA_TIMEOUT_S = 15.0  # the participant's media stopped this long: the call ends


@dataclass
class WorkerConfig:
    janus: str  # Janus' HTTP API, e.g. http://127.0.0.1:8088/janus
    room: int
    feed: int  # the participant's publisher id in the room
    publisher_id: int | None = None  # the id to publish as (the controller picks it, to kick it on failover)
    enhance: str = field(default_factory=default_enhancer)  # what the call starts with: a suppressor, or "off"
    captions: bool = True
    overlay: bool = True
    lip_gate: bool = True  # the lip gate in the call (the room page's "Only my voice" toggle switches it)


def warm_up(enhance: str) -> float:
    """Loads what a call needs before the first one comes (imports, the shared models): seconds."""
    started = time.monotonic()
    import avcall.pipelines.sinks.webrtc  # noqa: F401
    import avcall.pipelines.sources.webrtc  # noqa: F401
    import avcall.pipelines.stages.captioner  # noqa: F401
    import avcall.pipelines.stages.face_tracker  # noqa: F401

    SharedModels().starting(enhance)
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
        self.models = SharedModels()
        self.line = CallChannel(self.models.enhancers)
        self.session: JanusSession | None = None
        self.pc_in = self.pc_out = None
        self.tracks: dict[str, object] = {}
        self._stop = asyncio.Event()

    # --- Janus and aiortc -------------------------------------------------------------------------------
    async def _subscribe(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self.sub = await self.session.attach()
        data, jsep = await self.sub.send({"request": "join", "ptype": "subscriber", "room": self.cfg.room,
                                          "streams": [{"feed": self.cfg.feed}]}, expect="videoroom")
        if jsep is None:
            raise JanusError(f"subscribing to feed {self.cfg.feed}: no offer came ({data})")
        self.pc_in = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: the SFU is the other end

        self.pc_in.on("track", lambda track: self.line.on_track(self.pc_in, track, self.tracks))

        self.pc_in.on("datachannel", lambda channel: channel.on("message", self.line.on_message))
        await self.pc_in.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
        if "m=application" in jsep["sdp"]:  # the participant's page sends its toggles; Janus relays them to a
            self.pc_in.createDataChannel("JanusDataChannel").on("message", self.line.on_message)  # channel of ours
        await self.pc_in.setLocalDescription(await self.pc_in.createAnswer())
        await self.sub.send({"request": "start"}, jsep={"type": "answer", "sdp": self.pc_in.localDescription.sdp},
                            expect="started")
        if not self.tracks:
            raise JanusError(f"feed {self.cfg.feed} sends neither audio nor video")
        self.state.subscribed_at = time.time()

    def _build(self) -> None:
        """The call, as `avcall serve` builds a peer's (app/call_channel.py)."""
        self.line.build(page_call(self.models, self.cfg.enhance, overlay=self.cfg.overlay,
                                  captions=self.cfg.captions, lip_gate=True if self.cfg.lip_gate else "off"),
                        self.tracks)

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
        for track in (self.line.audio_out, self.line.video_out):
            if track is not None:
                self.pc_out.addTrack(track)
        self.line.channel = self.pc_out.createDataChannel("avcall")

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
    def telemetry(self) -> dict:
        """What the worker adds to its call's telemetry; the call's state for the controller and the bench."""
        self.state.audio_delay_ms = self.line.audio_delays()[0]
        self.state.incidents = self.line.incidents()
        return {"worker_pid": self.state.pid, "feed": self.cfg.feed}

    async def _watch(self) -> None:
        """Ends the call when the participant goes (their feed unpublished, the subscription hung up) or their
        media stops for MEDIA_TIMEOUT_S."""
        media = asyncio.ensure_future(self.line.watchdog(MEDIA_TIMEOUT_S))
        try:
            while not media.done():
                try:
                    event = await asyncio.wait_for(self.sub.events.get(), 1.0)
                except asyncio.TimeoutError:
                    if self.session.closed.is_set():
                        self.state.ended = "janus session gone"
                        return
                    continue
                data = event.get("plugindata", {}).get("data", {})
                if data.get("unpublished") == self.cfg.feed or data.get("leaving") == self.cfg.feed:
                    self.state.ended = "participant gone (left the room)"  # told to our publisher handle
                    return
                if event.get("janus") in ("hangup", "detached"):
                    self.state.ended = ("participant gone (subscription hung up)"
                                        if event.get("sender") == self.sub.id else "our feed hung up")
                    return
            self.state.ended = media.result()
        finally:
            media.cancel()

    async def run(self) -> CallState:
        """The call from subscription to the participant's leaving (or `stop()`)."""
        self.session = await JanusSession(self.cfg.janus).open()
        tasks: list[asyncio.Task] = []
        try:
            await self._subscribe()
            self._build()
            await self._publish()
            run = asyncio.create_task(self.line.pipeline.run(), name=f"call-{self.cfg.feed}")
            tasks = [run, asyncio.create_task(self.line.send_telemetry(self.telemetry)),
                     asyncio.create_task(self._watch()),
                     asyncio.create_task(self._stop.wait())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if run.done() and not run.cancelled() and run.exception() is not None:
                self.state.ended = f"pipeline stopped: {run.exception()}"
            self.state.ended = self.state.ended or "stopped"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.telemetry()  # the call's last figures, in its state
            self.line.stop_tracks()
            for pc in (self.pc_in, self.pc_out):
                if pc is not None:
                    await pc.close()
            await self.session.close()
        return self.state

    def stop(self) -> None:
        self._stop.set()
