"""A WebRTC call sends video only while the talking face draws it: with it off, the outgoing video track gets no
frame (aiortc's sender waits in `recv` and encodes nothing) and the overlay goes as landmarks on the data
channel; switched on, the portrait's frames flow; switched off again, they stop."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from avcall.pipelines.call import CallConfig, build_webrtc_call
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.features import available

FPS, RATE = 25, 48_000


class FakeTrack:
    """An incoming aiortc track at real time: `kind` "video" (a grey 160x120 picture) or "audio" (a 20 ms tone)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.n, self.start = kind, 0, None

    async def recv(self):
        import av

        loop = asyncio.get_running_loop()
        self.start = self.start or loop.time()
        period = 1 / FPS if self.kind == "video" else 0.02
        await asyncio.sleep(max(0.0, self.start + self.n * period - loop.time()))
        self.n += 1
        if self.kind == "video":
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 128, np.uint8), format="bgr24")
            frame.pts = 1_000_000 + self.n * 90_000 // FPS  # an RTP timestamp
            return frame
        t = (np.arange(960) + self.n * 960) / RATE
        pcm = (3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self.n * 960
        return frame

    def stop(self) -> None:
        pass


@pytest.mark.skipif(not available("talking_face"), reason="the talking face's weights are not shipped here")
def test_video_goes_out_only_while_the_talking_face_is_on():
    cfg = CallConfig(max_faces=1, enhance="off", avatar="off", lip_gate="off")
    messages: list[dict] = []

    async def run() -> dict:
        call = build_webrtc_call(cfg, {"video": FakeTrack("video"), "audio": FakeTrack("audio")}, SessionClock(),
                                 lambda m: messages.append(json.loads(m)), on_state=lambda state: None)
        track = call.video_out
        got = {"frames": 0}

        async def sender() -> None:  # what aiortc's RTCRtpSender does with the track: recv, encode, send
            while True:
                await track.recv()
                got["frames"] += 1

        tasks = [asyncio.create_task(call.pipeline.run()), asyncio.create_task(sender())]
        counts = {}
        try:
            await asyncio.sleep(3.0)
            counts["off"] = (got["frames"], track.sent, sum(m["type"] == "landmarks" for m in messages))
            await call.pipeline.control({"avatar": "voice"})
            await asyncio.sleep(4.0)
            counts["on"] = (got["frames"], track.sent)
            await call.pipeline.control({"avatar": "off"})
            await asyncio.sleep(1.0)  # what the face had drawn before the switch
            counts["off_again"] = got["frames"]
            await asyncio.sleep(2.0)
            counts["later"] = (got["frames"], sum(m["type"] == "landmarks" for m in messages))
        finally:
            call.pipeline.end_input()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        return counts

    counts = asyncio.run(run())
    print(counts)
    frames_off, sent_off, marks_off = counts["off"]
    assert frames_off == 0 and sent_off == 0  # 3 s of camera and not one frame for the encoder
    assert marks_off > 25  # the overlay went as landmarks instead, a message a frame
    frames_on, sent_on = counts["on"]
    assert frames_on > 25 and sent_on == frames_on  # the portrait speaking: its frames flow
    later_frames, later_marks = counts["later"]
    assert later_frames == counts["off_again"]  # and stop with it
    assert later_marks > marks_off
