"""`avcall serve` with a real aiortc peer on loopback: the call round trip (tracked face, enhanced voice back,
captions and the face's landmarks on the data channel, no video back), the refusals, and peers that come and go leaving nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, web

from avcall.app.serve import Server, ServeConfig
from avcall.models.data.align import normalise
from avcall.pipelines.errors import InputError

pytestmark = pytest.mark.usefixtures("ice_address")

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (scripts/setup.sh)")
LINE = "please call me back tomorrow morning"


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory) -> Path:
    from avcall.models.data.portrait import write_talking_portrait

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (scripts/setup.sh)")
    path = tmp_path_factory.mktemp("serve") / "talk.mp4"
    assert write_talking_portrait(path, LINE)
    return path


class Served:
    """The server on 127.0.0.1 at a free port, inside the test's event loop."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.server = Server(cfg)
        self.server.load_models()

    async def __aenter__(self):
        self.runner = web.AppRunner(self.server.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def connected(pc, timeout_s: float = 15.0) -> None:
    """Until the connection is up (ICE and DTLS done): the call's seconds count from there, as a lost handshake
    packet (retransmitted after 1 s, then 2 s) would otherwise eat them on a lossy network."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while pc.connectionState not in ("connected", "failed", "closed"):
        assert asyncio.get_running_loop().time() < deadline, f"not connected after {timeout_s} s"
        await asyncio.sleep(0.05)


async def call(url: str, clip: Path | None, seconds: float, body: dict | None = None):
    """A peer as the page makes one: the clip's audio and video out, a data channel "avcall", no STUN, kept up
    for `seconds` once connected; returns (status, answer, received audio (float32, 48 kHz mono), video frames
    received, messages)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(clip)) if clip else None
    if player:
        pc.addTrack(player.audio)
        pc.addTrack(player.video)
    else:
        pc.addTransceiver("audio", direction="sendrecv")
    channel = pc.createDataChannel("avcall")
    messages, audio, video = [], [], [0]
    channel.on("message", lambda m: messages.append(json.loads(m)))

    async def read(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - the track ended
                return
            if track.kind == "audio":
                x = frame.to_ndarray().astype(np.float32) / 32768
                audio.append(x.reshape(-1, len(frame.layout.channels)).mean(axis=1) if x.size else x.reshape(-1))
            else:
                video[0] += 1

    readers = []
    pc.on("track", lambda t: readers.append(asyncio.ensure_future(read(t))))
    await pc.setLocalDescription(await pc.createOffer())
    async with ClientSession() as session:
        reply = await session.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"} | (body or {}))
        answer = await reply.json()
    if reply.status == 200:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await connected(pc)
        await asyncio.sleep(seconds)
    await pc.close()
    if player:
        for track in (player.audio, player.video):
            track.stop()
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return reply.status, answer, np.concatenate(audio) if audio else np.zeros(0, np.float32), video[0], messages


@needs_flite
def test_a_call_round_trip(talking_clip):
    async def run():
        async with Served(ServeConfig()) as served:
            result = await call(served.url, talking_clip, 10.0)
            for _ in range(50):
                if not served.server.peers:
                    break
                await asyncio.sleep(0.1)
            return result, len(served.server.peers)

    (status, answer, audio, frames, messages), left = asyncio.run(run())
    assert status == 200 and answer["type"] == "answer" and answer["peer"]
    # no video comes back (the talking face is off): the overlay comes as landmarks, one message a frame
    assert frames == 0
    marks = [m for m in messages if m["type"] == "landmarks"]
    assert len(marks) > 50 and any(m["face"] for m in marks), len(marks)
    assert all(isinstance(m["rtp"], int) for m in marks) and any("thumb" in m for m in marks)
    assert [n for n, _ in marks[0]["lines"]][:2] == [20, 20]  # the outer and inner lips first
    assert len(audio) > 48_000 * 3 and np.sqrt(np.mean(audio**2)) > 1e-3  # and the voice
    telemetry = [m for m in messages if m["type"] == "telemetry"]
    assert telemetry and any(m["face"] for m in telemetry)  # the server tracked the face
    assert telemetry[-1]["audio_delay_ms"] is not None
    assert telemetry[-1]["video_frames_sent"] == 0 and telemetry[-1]["landmarks_sent"] > 50
    finals = " ".join(m["text"] for m in messages if m["type"] == "caption" and m["kind"] == "final")
    assert len(set(LINE.split()) & set(normalise(finals))) >= 2, finals  # Whisper's captions have case, commas
    assert left == 0  # the peer that left freed its place


def test_refusals():
    async def run():
        out = {}
        async with Served(ServeConfig(max_peers=1)) as served:
            async with ClientSession() as s:
                url = served.url
                out["not json"] = (await s.post(f"{url}/offer", data=b"{nope")).status
                out["no sdp"] = (await s.post(f"{url}/offer", json={"type": "offer"})).status
                out["bad sdp"] = (await s.post(f"{url}/offer", json={"type": "offer", "sdp": "v=0\r\nbogus"})).status
                out["bad mode"] = (await s.post(f"{url}/offer", json={"type": "offer", "sdp": "v=0", "enhance": "x"})).status
                out["too big"] = (await s.post(f"{url}/offer", data=b"x" * (300 * 1024),
                                               headers={"Content-Type": "application/json"})).status
                out["other origin"] = (await s.post(f"{url}/offer", json={}, headers={"Origin": "http://evil.example"})).status
                out["other host"] = (await s.get(f"{url}/", headers={"Host": "rebound.example:8080"})).status
                out["traversal"] = (await s.get(f"{url}/static/..%2F..%2Fserve.py")).status
                out["unknown static"] = (await s.get(f"{url}/static/secret.txt")).status
                page = await s.get(f"{url}/")
                out["page"] = page.status
                out["script"] = (await s.get(f"{url}/static/client.js")).status
                out["same origin"] = (await s.post(f"{url}/offer", json={}, headers={"Origin": url})).status
            body = (await page.text()) if page.status == 200 else ""
            out["peer refused past max"] = await call_twice(served.url)
        return out, body

    out, body = asyncio.run(run())
    assert out["not json"] == 400 and out["no sdp"] == 400 and out["bad sdp"] == 400 and out["bad mode"] == 400
    assert out["too big"] == 413
    assert out["other origin"] == 403 and out["other host"] == 403
    assert out["traversal"] == 404 and out["unknown static"] == 404
    assert out["page"] == 200 and out["script"] == 200 and out["same origin"] == 400
    assert "client.js" in body and "http" not in body.replace("http-equiv", "")  # nothing fetched from elsewhere
    # the enhancement selector offers what ships and says what it is, the default suppressor chosen
    from avcall.pipelines.suppressors import describe
    from avcall.pipelines.features import enhancers

    offered = re.findall(r'<option value="([^"]+)"( selected)?>([^<]*)</option>', body.split('id="enhance"')[1].split("</select>")[0])
    assert [v for v, _, _ in offered] == ["off", *enhancers()]
    assert [v for v, sel, _ in offered if sel] == enhancers()[:1]
    assert all(label == ("off" if v == "off" else describe(v)) for v, _, label in offered)
    assert "lip-guided" not in body
    assert out["peer refused past max"] == (200, 503)


async def call_twice(url: str) -> tuple[int, int]:
    """Two peers at once against max_peers=1: the second is refused with a reason."""
    first = asyncio.ensure_future(call(url, None, 2.0))
    await asyncio.sleep(1.0)
    second = await call(url, None, 0.1)
    assert "too many peers" in second[1]["error"]
    return (await first)[0], second[0]


def test_token_off_loopback():
    with pytest.raises(InputError, match="--token"):
        Server(ServeConfig(host="0.0.0.0"))

    async def run():
        async with Served(ServeConfig(token="s3cret")) as served:
            async with ClientSession() as s:
                wrong = await s.post(f"{served.url}/offer", json={"type": "offer", "sdp": "v=0", "token": "guess"})
                right = await s.post(f"{served.url}/offer", json={"type": "offer", "sdp": "v=0", "token": "s3cret"})
                return wrong.status, (await wrong.json())["error"], right.status

    wrong, reason, right = asyncio.run(run())
    assert wrong == 403 and "token" in reason
    assert right == 400  # past the token check: the SDP itself is refused


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_ten_peers_leave_nothing_behind():
    async def run():
        async with Served(ServeConfig(captions=False)) as served:
            await call(served.url, None, 0.5)  # warm up: lazy imports and sessions
            await asyncio.sleep(0.5)
            before = (open_fds(), threading.active_count(), len(asyncio.all_tasks()))
            for _ in range(10):
                status, *_ = await call(served.url, None, 0.5)
                assert status == 200
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = (open_fds(), threading.active_count(), len(asyncio.all_tasks()))
                if not served.server.peers and all(a <= b for a, b in zip(after, before)):
                    break
                await asyncio.sleep(0.2)
            return before, after, len(served.server.peers)

    before, after, peers = asyncio.run(run())
    assert peers == 0
    assert after[0] <= before[0], f"file descriptors {before[0]} -> {after[0]}"
    assert after[1] <= before[1], f"threads {before[1]} -> {after[1]}"
    assert after[2] <= before[2], f"tasks {before[2]} -> {after[2]}"
