"""A scripted participant of a Janus VideoRoom (aiortc), for `avcall bench cluster` and the tests: it
publishes a clip as its camera and microphone, and subscribes to the feed a worker publishes for it
(`avcall:<its id>`), recording when each processed audio frame and data-channel message arrives."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avcall.app.janus import DISPLAY_PREFIX, JanusError, JanusSession


@dataclass
class Received:
    """What came back from the worker's feeds, stamped with time.monotonic()."""

    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, 48 kHz mono block)
    messages: list[tuple[float, dict]] = field(default_factory=list)
    feeds: list[tuple[float, int]] = field(default_factory=list)  # (subscribed, worker feed id)
    own_audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # the own feed, unprocessed

    def captions(self, since: float = 0.0) -> list[str]:
        return [m["text"] for t, m in self.messages if t >= since and m.get("type") == "caption"
                and m.get("kind") == "final" and m.get("text")]


class Participant:
    """Publishes `clip` (looped) into `room`, then follows the worker feed published for it."""

    def __init__(self, janus: str, room: int, clip: Path, display: str = "participant") -> None:
        self.janus, self.room, self.clip, self.display = janus, room, clip, display
        self.id: int | None = None
        self.received = Received()
        self.sent_audio: list[tuple[float, np.ndarray]] = []  # (send time, 48 kHz block) of the published voice
        self.session: JanusSession | None = None
        self.pcs: list = []
        self.tasks: list[asyncio.Task] = []
        self._feed_sub = None  # (handle, pc) of the worker feed followed now

    async def start(self) -> int:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer

        self.session = await JanusSession(self.janus).open()
        self.pub = await self.session.attach()
        data, _ = await self.pub.send({"request": "join", "ptype": "publisher", "room": self.room,
                                       "display": self.display}, expect="id")
        self.id = data["id"]
        self.player = MediaPlayer(str(self.clip), loop=True)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        pc.addTrack(_Tap(self.player.audio, self.sent_audio))
        pc.addTrack(self.player.video)
        await pc.setLocalDescription(await pc.createOffer())
        configured, answer = await self.pub.send({"request": "publish"},
                                                 jsep={"type": "offer", "sdp": pc.localDescription.sdp},
                                                 expect="configured")
        self.audio_mid = next((st.get("mid") for st in configured.get("streams", []) if st.get("type") == "audio"),
                              None)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        self.tasks.append(asyncio.create_task(self._follow(data.get("publishers", []))))
        return self.id

    async def _follow(self, publishers: list[dict]) -> None:
        """Subscribes to each new `avcall:<my id>` feed as it appears (a worker, or its replacement)."""
        for p in publishers:
            if p.get("display") == f"{DISPLAY_PREFIX}{self.id}":
                await self._subscribe(p["id"])
        while True:
            event = await self.pub.events.get()
            data = event.get("plugindata", {}).get("data", {})
            for p in data.get("publishers", []) or []:
                if p.get("display") == f"{DISPLAY_PREFIX}{self.id}":
                    await self._subscribe(p["id"])

    async def _subscribe(self, feed: int) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        if self._feed_sub is not None:
            handle, old = self._feed_sub
            await old.close()
            await handle.detach()
        handle = await self.session.attach()
        _, jsep = await handle.send({"request": "join", "ptype": "subscriber", "room": self.room,
                                     "streams": [{"feed": feed}]}, expect="videoroom")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._feed_sub = (handle, pc)

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.create_task(self._drain_audio(track)))
            else:
                self.tasks.append(asyncio.create_task(_drain(track)))

        def on_message(message) -> None:
            try:
                self.received.messages.append((time.monotonic(), json.loads(message)))
            except (TypeError, ValueError):
                pass

        pc.on("datachannel", lambda channel: channel.on("message", on_message))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
        # Janus relays a feed's data to a subscriber once the subscriber has opened a channel (as janus.js does)
        pc.createDataChannel("JanusDataChannel").on("message", on_message)
        await pc.setLocalDescription(await pc.createAnswer())
        await handle.send({"request": "start"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp},
                          expect="started")
        self.received.feeds.append((time.monotonic(), feed))

    async def _drain_audio(self, track, into: list | None = None) -> None:
        from aiortc.mediastreams import MediaStreamError

        into = self.received.audio if into is None else into
        try:
            while True:
                frame = await track.recv()
                into.append((time.monotonic(), _mono48(frame)))
        except MediaStreamError:
            return

    async def watch_own_feed(self) -> None:
        """Subscribes to this participant's own feed as Janus relays it, unprocessed: its voice lands in
        `received.own_audio` (the SFU's share of the delay, without a worker). Audio only: no video to decode."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        handle = await self.session.attach()
        for attempt in range(40):  # the feed is there once its connection is up
            try:
                _, jsep = await handle.send({"request": "join", "ptype": "subscriber", "room": self.room,
                                             "streams": [{"feed": self.id, "mid": self.audio_mid}]},
                                            expect="videoroom")
                break
            except JanusError:
                if attempt == 39:
                    raise
                await asyncio.sleep(0.25)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("track")
        def on_track(track) -> None:
            drain = self._drain_audio(track, self.received.own_audio) if track.kind == "audio" else _drain(track)
            self.tasks.append(asyncio.create_task(drain))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await handle.send({"request": "start"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp},
                          expect="started")

    async def stop(self) -> None:
        player = getattr(self, "player", None)
        for track in (player.audio, player.video) if player is not None else ():
            if track is not None:
                track.stop()  # the player's decoding thread ends with its last track
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._feed_sub is not None:
            self.pcs.append(self._feed_sub[1])
        for pc in self.pcs:
            await pc.close()
        if self.session is not None:
            await self.session.close()


def _mono48(frame) -> np.ndarray:
    x = frame.to_ndarray().astype(np.float32)
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        x = x.reshape(channels, -1).mean(axis=0)
    else:
        x = x.reshape(-1, channels).mean(axis=1)
    if frame.format.name.startswith("s16"):
        x = x / 32768.0
    if frame.sample_rate != 48000:  # nearest-sample, for timing only
        x = x[(np.arange(int(len(x) * 48000 / frame.sample_rate)) * frame.sample_rate / 48000).astype(int)]
    return x


async def _drain(track) -> None:
    from aiortc.mediastreams import MediaStreamError

    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return


def _tap_base():
    from aiortc import MediaStreamTrack

    return MediaStreamTrack


class _Tap(_tap_base()):
    """The player's audio as it is sent, its blocks kept with their send times (to time the round trip)."""

    kind = "audio"

    def __init__(self, source, log: list) -> None:
        super().__init__()
        self.source, self.log = source, log

    async def recv(self):
        frame = await self.source.recv()
        self.log.append((time.monotonic(), _mono48(frame)))
        if len(self.log) > 6000:  # two minutes of 20 ms blocks
            del self.log[:1000]
        return frame
