"""One call over WebRTC and its data channel "avcall", the same for a peer of `avcall serve` and a call of a room
worker: the call from the one builder (pipelines/call.py) over the incoming tracks, the page's controls in (one
vocabulary, checked, rate-limited), the stages' events, state and telemetry out, and the watchdog that ends a
call whose media never came or stopped.

The controls a page sends: `{"type": "control", "enhance": NAME or "off", "overlay": bool, "lip_gate": bool,
"avatar": "off" | "voice" | "reenact", "emotion": bool}` (any subset; anything else is ignored). Both pages
send them from one script (app/static/controls.js).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from avcall.pipelines.call import CallConfig, build_webrtc_call
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.errors import InputError
from avcall.pipelines.features import available, enhancers
from avcall.pipelines.telemetry import percentiles

AVATAR_MODES = ("off", "voice", "reenact")
CONTROL_RATE, CONTROL_BURST = 20.0, 40  # data-channel messages a second (a page sends a few a minute)
MAX_MESSAGE = 4096  # characters of one control message
TELEMETRY_EVERY_S = 0.5
CONNECT_TIMEOUT_S = 30.0  # a call whose media never comes is ended after this long
WATCH_EVERY_S = 0.5
# what a control switches on that the call does not have: the page is told why
UNAVAILABLE = {"lip_gate": "the lip gate is not available: it needs the camera (and the server's --lip-gate on)",
               "avatar": "the talking face is not available: no talking-face weights on this server, or no camera "
                         "track",
               "emotion": "emotion reading is not available: no emotion weights on this server"}


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


class SharedModels:
    """What the calls of one process share: the suppressors it offers and the emotion nets (when they ship).
    Their onnxruntime sessions are made once per process whoever asks (pipelines/runtime.shared_session): a
    model with a batch axis, avcall-ao, is stepped for all the calls in one batched call per hop."""

    def __init__(self) -> None:
        self.enhancers = ("off", *enhancers())  # what a page may switch between
        self.note = ("" if len(self.enhancers) > 1
                     else "no noise suppressor ships on this server: the voice is passed through")
        self.emotion = None
        if available("emotion"):
            from avcall.pipelines.nets.emotion import EmotionModels

            self.emotion = EmotionModels()

    def starting(self, enhance: str) -> str:
        """`enhance`, what new calls start with, checked against what ships (a one-line InputError otherwise),
        its weights checked and sessions made now, before the first call."""
        from avcall.pipelines.suppressors import open_suppressor

        if enhance not in self.enhancers:
            raise InputError(f"--enhance {enhance}: not installed here; these are: {', '.join(self.enhancers)}")
        if enhance != "off":
            open_suppressor(enhance)
        return enhance


def page_call(models: SharedModels, enhance: str, *, overlay: bool = True, lip_gate: bool | str = True,
              captions: bool = True, language: str = "en") -> CallConfig:
    """The call a page controls: every switchable feature that ships is there, the optional readers off."""
    return CallConfig(max_faces=1, enhance=enhance, controlled=True, captions=captions, language=language,
                      emotion=models.emotion is not None, emotion_on=False, emotion_models=models.emotion,
                      avatar="off" if available("talking_face") else None, overlay=overlay, meters=True,
                      lip_gate=lip_gate)


class CallChannel:
    """A call between WebRTC tracks and a page: build it, feed it the page's controls, tell the page how it
    stands."""

    def __init__(self, enhancers_offered: tuple[str, ...], clock: SessionClock | None = None) -> None:
        self.enhancers = enhancers_offered
        self.clock = clock or SessionClock()
        self.channel = None  # the data channel (aiortc's), once the page opened it
        self.control = RateLimit(CONTROL_RATE, CONTROL_BURST)
        self.messages_dropped = 0  # control messages over the rate limit
        self.overlay = True
        self.call = self.pipeline = self.audio_out = self.video_out = None
        self.receive_buffer = None  # the voice's jitter buffer (its packets' waits: the receive leg of the delay)
        # how the call stands, from the stages' state events (Stage.report): meters, face, modes
        self.state: dict = {"level_in_db": None, "level_out_db": None, "face": False, "enhance": "off",
                            "sync_offset_ms": None, "emotion": "unavailable", "avatar": "unavailable",
                            "lip_gate": "unavailable", "lip_gate_reason": None}

    def build(self, cfg: CallConfig, tracks: dict) -> None:
        """The call over `tracks` ({"audio": ..., "video": ...}, aiortc's): the outgoing tracks are
        `audio_out` and `video_out` (None where nothing goes out)."""
        self.overlay = cfg.overlay
        built = build_webrtc_call(cfg, tracks, self.clock, self.send, on_state=self.state.update)
        self.call, self.pipeline = built.call, built.pipeline
        self.audio_out, self.video_out = built.audio_out, built.video_out

    def on_track(self, pc, track, tracks: dict) -> None:
        """An incoming track of `pc` (aiortc's): kept in `tracks` (the first of each kind); the voice's receiver
        gets a jitter buffer that skips lost packets."""
        from avcall.pipelines.sources.webrtc import tolerate_audio_loss

        if track.kind not in ("audio", "video") or track.kind in tracks:
            return
        tracks[track.kind] = track
        for receiver in pc.getReceivers():
            if receiver.track is track and track.kind == "audio":
                self.receive_buffer = tolerate_audio_loss(receiver)

    def send(self, message: str | dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message if isinstance(message, str) else json.dumps(message))

    def status(self, text: str) -> None:
        self.send({"type": "status", "text": text})

    # --- controls in --------------------------------------------------------------------------------------
    def on_message(self, message) -> None:
        """A page's control; anything malformed is ignored, and past CONTROL_RATE a second, anything at all
        (counted, and said once)."""
        if not self.control.allow():
            self.messages_dropped += 1
            if self.messages_dropped == 1:
                self.status("too many data-channel messages: some are ignored")
            return
        try:
            msg = json.loads(message) if isinstance(message, str) and len(message) < MAX_MESSAGE else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "control":
            return
        switch = self.parse(msg)
        for role, on in switch.items():
            if on not in (False, "off") and role in UNAVAILABLE and not self.has(role):
                self.status(UNAVAILABLE[role])
        if "overlay" in switch:
            self.overlay = switch["overlay"]
        if switch and self.pipeline is not None:
            asyncio.ensure_future(self.pipeline.control(switch))

    def parse(self, msg: dict) -> dict:
        """The controls of one message that are well formed, in the stages' words."""
        switch = {}
        if msg.get("enhance") in self.enhancers:
            switch["enhance"] = msg["enhance"]
        for key in ("overlay", "lip_gate", "emotion"):
            if isinstance(msg.get(key), bool):
                switch[key] = msg[key]
        if msg.get("avatar") in AVATAR_MODES:
            switch["avatar"] = msg["avatar"]
        return switch

    def has(self, role: str) -> bool:
        """Whether the call was built with that stage (the builder's roles: "avatar", "emotion", ...)."""
        return self.call is not None and role in self.call.roles

    # --- state out ----------------------------------------------------------------------------------------
    def audio_delays(self) -> tuple[float | None, float | None]:
        """The voice's added delay through this call, median and 95th percentile (ms), None before any."""
        delays = sorted(self.audio_out.delays_ms) if self.audio_out is not None else []
        return (delays[len(delays) // 2], delays[int(len(delays) * 0.95)]) if delays else (None, None)

    def incidents(self) -> dict:
        return self.pipeline.incidents.summary()["counts"] if self.pipeline else {}

    def failures(self) -> list[dict]:
        """Each stage that threw, first time: its name, the error, when (Incidents.failed)."""
        events = self.pipeline.incidents.summary()["events"] if self.pipeline else []
        return [e for e in events if e["kind"] == "stage_failed"]

    def telemetry(self) -> dict:
        stages = {}
        for stage in self.pipeline.stages if self.pipeline else ():
            if stage.telemetry.service_ms:  # what each stage costs (their waits are not the page's to show)
                service = percentiles(stage.telemetry.service_ms)
                stages[stage.name] = {"p50_ms": service["p50"], "p95_ms": service["p95"]}
        median, p95 = self.audio_delays()
        waits = sorted(self.receive_buffer.waits_ms) if self.receive_buffer is not None else []
        counts = self.incidents()
        frames = counts.get("avatar_codec_frames")
        marks = self.call.roles.get("overlay") if self.call is not None else None
        marks_frames = getattr(marks, "sent_frames", 0)
        return {"type": "telemetry", "stages": stages, "audio_delay_ms": median, "audio_delay_p95_ms": p95,
                "receive_buffer_ms": round(waits[len(waits) // 2], 1) if waits else None,
                "levels": {"in_db": self.state["level_in_db"], "out_db": self.state["level_out_db"]},
                "face": bool(self.state["face"]), "enhance": self.state["enhance"],
                "sync_offset_ms": self.state["sync_offset_ms"], "overlay": self.overlay, "incidents": counts,
                "failures": self.failures(), "messages_dropped": self.messages_dropped,
                "emotion": self.state["emotion"],
                "avatar": self.state["avatar"], "lip_gate": self.state["lip_gate"],
                "lip_gate_reason": self.state["lip_gate_reason"],
                "avatar_codec_bytes_per_frame": round(counts["avatar_codec_bytes"] / frames, 2) if frames else None,
                # the overlay as landmarks (the page draws it) and the video sent (the talking face's frames only)
                "landmarks_sent": marks_frames,
                "landmark_bytes_per_frame": round(marks.sent_bytes / marks_frames) if marks_frames else None,
                "video_frames_sent": self.video_out.sent if self.video_out is not None else 0}

    async def send_telemetry(self, extra=dict) -> None:
        """Telemetry to the page every TELEMETRY_EVERY_S, with what `extra()` adds (the served page's peer
        count, the worker's process id), until cancelled."""
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            self.send(self.telemetry() | extra())

    async def watchdog(self, media_timeout_s: float) -> str:
        """Returns why the call should end: its media never came (CONNECT_TIMEOUT_S) or stopped for
        `media_timeout_s` (gone without closing: a crash, a lost network)."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            last = self.pipeline.last_input if self.pipeline else None
            if last is None and time.monotonic() - started > CONNECT_TIMEOUT_S:
                return "media never came"
            if last is not None and time.monotonic() - last > media_timeout_s:
                silent = round(time.monotonic() - last, 1)
                self.pipeline.incidents.note("peer_timeout", self.clock.now(), silent_s=silent)
                return "media stopped"

    def stop_tracks(self) -> None:
        for track in (self.audio_out, self.video_out):
            if track is not None:
                track.stop()
