"""The served call's emotion opt-in, with a real aiortc peer on loopback playing a talking face: off by default
(no reading arrives), a control message switches it on (readings with the documented fields arrive about 4
times a second), another switches it off (they stop)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from avcall.app.serve import ServeConfig
from tests.app.test_serve import LINE, Served
from tests.conftest import needs_emotion_weights

pytestmark = [pytest.mark.usefixtures("ice_address"), needs_emotion_weights]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """The talking portrait saying LINE five times (16 s): the whole test is one pass of it."""
    from avcall.models.data.portrait import write_talking_portrait

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (scripts/setup.sh)")
    path = tmp_path_factory.mktemp("serve_emotion") / "talk.mp4"
    assert write_talking_portrait(path, [LINE] * 5)
    return path


class Peer:
    """A browser-like peer: the clip's audio and video, the "avcall" channel; messages kept with their arrival
    time."""

    def __init__(self, clip) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection
        from aiortc.contrib.media import MediaPlayer

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.player = MediaPlayer(str(clip))
        self.pc.addTrack(self.player.audio)
        self.pc.addTrack(self.player.video)
        self.channel = self.pc.createDataChannel("avcall")
        self.messages: list[tuple[float, dict]] = []
        self.channel.on("message", lambda m: self.messages.append((time.monotonic(), json.loads(m))))
        self.pc.on("track", lambda t: asyncio.ensure_future(self._drain(t)))

    @staticmethod
    async def _drain(track) -> None:
        try:
            while True:
                await track.recv()
        except Exception:  # noqa: BLE001 - the track ended
            return

    async def connect(self, url: str) -> None:
        from aiohttp import ClientSession
        from aiortc import RTCSessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with ClientSession() as session:
            reply = await session.post(f"{url}/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer"})
            assert reply.status == 200, await reply.text()
            answer = await reply.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    def emotion(self, on: bool) -> None:
        self.channel.send(json.dumps({"type": "control", "emotion": on}))

    def readings(self, since: float = 0.0) -> list[dict]:
        return [m for t, m in self.messages if m["type"] == "emotion" and t >= since]

    def telemetry(self) -> dict:
        return next((m for _, m in reversed(self.messages) if m["type"] == "telemetry"), {})

    async def wait(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            await asyncio.sleep(0.1)
        return condition()

    async def close(self) -> None:
        await self.pc.close()
        for track in (self.player.audio, self.player.video):
            track.stop()


def test_emotion_is_off_until_the_page_opts_in(long_clip):
    from avcall.pipelines.nets.emotion import CLASSES

    async def run():
        async with Served(ServeConfig(enhance="off", captions=False)) as served:
            peer = Peer(long_clip)
            try:
                await peer.connect(served.url)
                # connected, media flowing (the server's telemetry comes every 0.5 s): then 3 s with it off
                assert await peer.wait(lambda: peer.telemetry().get("face"), 30), peer.telemetry()
                off_telemetry = peer.telemetry()
                await asyncio.sleep(3.0)
                before = peer.readings()
                on_at = time.monotonic()
                peer.emotion(True)
                assert await peer.wait(lambda: len(peer.readings(on_at)) >= 12, 20)
                on = peer.readings(on_at)
                on_seconds = time.monotonic() - on_at
                on_telemetry = peer.telemetry()
                peer.emotion(False)
                await asyncio.sleep(1.0)  # a reading already under way may still come
                off_at = time.monotonic()
                await asyncio.sleep(3.0)
                after = peer.readings(off_at)
                return off_telemetry, before, on, on_seconds, on_telemetry, after, peer.telemetry()
            finally:
                await peer.close()

    off_telemetry, before, on, on_seconds, on_telemetry, after, last_telemetry = asyncio.run(run())
    assert off_telemetry["emotion"] == "off" and before == []  # off by default: nothing read, nothing sent
    assert on_telemetry["emotion"] == "on"
    assert len(on) / on_seconds > 2, (len(on), on_seconds)  # about 4 a second
    for r in on:
        assert set(r) == {"type", "probs", "valence", "arousal", "leading", "confidence", "sources"}, r
        assert set(r["probs"]) == set(CLASSES) and abs(sum(r["probs"].values()) - 1) < 1e-2
        assert r["probs"][r["leading"]] == max(r["probs"].values())
        assert -1 <= r["valence"] <= 1 and -1 <= r["arousal"] <= 1 and 0 <= r["confidence"] <= 1
        assert set(r["sources"]) <= {"face", "voice"}
    assert any("face" in r["sources"] for r in on)  # the tracked face was read
    assert after == [] and last_telemetry["emotion"] == "off"  # switched off: the readings stop
