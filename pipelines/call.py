"""One call, built once: the stages between a call's sources and its sinks, in order, for every transport.

`avcall process` (a file, or the local camera and microphone), `avcall live`, `avcall soak`, the demo and
each peer of `avcall serve` all ask `build_call(config, transport)`; a new stage is added here, once.

    face tracker -> active speaker -> emotion -> lip features -> lip gate -> [meters in] -> captioner (raw voice)
    -> enhancer -> sync monitor -> captioner (enhanced voice) -> caption burner -> overlay (+ mood; WebRTC: landmarks)
    -> [meters out] -> [the audio's way out] -> talking face -> load probe -> A/V align

What the transport changes, and why:
- live (camera, microphone, WebRTC, a looped file at real time): late frames pass by rather than wait, the
  captioner decodes in its own process, the enhancer keeps its delay (and says so), and a load shedder thins
  the optional work out when the voice falls behind;
- offline (a file as fast as it decodes): stages wait for the lips and faces of each hop's time, and the
  enhancer takes its delay off so the outputs line up with the input;
- `audio_out` (the served call's outgoing audio track): the voice leaves before the picture work (the overlay
  is drawn before it, the talking face after), so drawing never holds the voice back; the browser plays the
  two tracks with its own jitter buffers, so no A/V alignment is done here.
- `frame_rtp` (a WebRTC call): the overlay is not drawn on a video sent back but sent as landmarks on the data
  channel (`LandmarkSender`), stamped with each frame's RTP timestamp; the page draws them over the camera frame
  the call saw. The outgoing video track gets the talking face's frames only: without it nothing is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from .asr import DEFAULT_ENGINE
from .clock import SessionClock
from .features import available, default_enhancer
from .load import AudioProbe, LoadShedder
from .stage import Stage


CAPTION_BACKLOG_S = 3.0  # live: audio older than this still waiting for the recogniser is skipped


@dataclass
class CallConfig:
    """What the call does (where it comes from and goes to is the transport's and the caller's)."""

    max_faces: int = 2
    face_model: Path | None = None
    enhance: str = "off"  # the noise suppressor's name (pipelines/suppressors), or "off"; the stage opens it
    captions: bool = False
    burn_captions: bool = False
    asr: str = DEFAULT_ENGINE  # the recogniser every caller gets unless it names another (--asr)
    asr_model: Path | None = None
    language: str = "en"  # the captions' (a Whisper language code, or "auto": detected on the first line)
    captions_from: str = "raw"  # "raw": the voice as recorded; "enhanced": after the enhancer
    # "voice" / "reenact": the outgoing video is the portrait; "off": the talking face is there, switched off
    avatar: str | None = None
    portrait: Path | None = None
    emotion: bool = False
    emotion_on: bool = True  # False: the emotion reader is there, switched off until a control turns it on
    emotion_models: object | None = None  # shared nets (a server's, for all its peers); None: opened per call
    overlay: bool = True  # the mesh and lips drawn on the outgoing camera video
    meters: bool = False  # level meters in and out and the face-presence tap (the served page's panel)
    # the lip gate (another voice held back while the speaker's lips are still): there wherever there is a camera
    # feed and a voice; "off" to leave it out, False to have it there switched off (a page's toggle turns it on)
    lip_gate: bool | str = True
    # a page switches the call's features while it runs (a served peer, a room worker): the enhancer is there
    # even when the call starts with it off
    controlled: bool = False


@dataclass
class Transport:
    clock: SessionClock
    video_size: tuple[int, int] | None  # the incoming video's, None without video
    fps: Fraction | float
    has_audio: bool
    live: bool  # frames come at real time (a late frame passes by rather than waits)
    audio_out: Stage | None = None  # the voice's way out, placed before the picture work (the served call)
    # WebRTC: the overlay goes to the page as landmarks (the page draws it), each frame's stamped with its RTP
    # timestamp by this (a frame's pts -> it, None when not known); None: the overlay is drawn on the video
    frame_rtp: Callable[[float], int | None] | None = None


@dataclass
class Call:
    stages: list[Stage]
    video_size: tuple[int, int] | None  # the outgoing video's (the portrait's when the avatar replaces the camera)
    fps: Fraction | float
    shedder: LoadShedder | None = None  # live: what thins the optional work out when the voice falls behind
    roles: dict[str, Stage] = field(default_factory=dict)  # stages a controller talks to, by role
    # how the call stands as built, before its stages report anything (Stage.report): the modes asked for,
    # "unavailable" for what the call does not have
    state: dict = field(default_factory=dict)

    def describe(self) -> list[str]:
        """The call as a printable list: each stage in order, with what it takes."""
        return [f"{i:2d}. {s.name} ({type(s).__name__}): "
                f"{', '.join(t.__name__ for t in s.accepts) or 'every frame'}" for i, s in enumerate(self.stages, 1)]


def talking_face(portrait: Path | None, mode: str = "voice", live: bool = True) -> Stage:
    from avcall.pipelines.face.render import load_portrait

    from .stages.talking_face import TalkingFace

    return TalkingFace(load_portrait(portrait) if portrait else None, mode=mode, live=live)


def build_call(cfg: CallConfig, transport: Transport) -> Call:
    """The call's stages, in order (see the module's docstring)."""
    t = transport
    video, live = t.video_size is not None, t.live
    stages: list[Stage] = []
    roles: dict[str, Stage] = {}

    def add(stage: Stage, role: str | None = None) -> Stage:
        stages.append(stage)
        if role:
            roles[role] = stage
        return stage

    if video:
        from .stages.face_tracker import FaceTracker

        add(FaceTracker(max_faces=cfg.max_faces, model_path=cfg.face_model))
        if cfg.max_faces >= 2 and t.has_audio and available("sync_judge"):
            from .stages.active_speaker import ActiveSpeaker

            add(ActiveSpeaker())  # of several faces, the one speaking
    if cfg.emotion:  # beside the tracker: it needs the frame with its face observation; the voice as recorded
        from .stages.emotion import EmotionReader

        # from a file each hop waits for the face of its time (the audio skips the tracker and runs ahead)
        add(EmotionReader(cfg.emotion_models, enabled=cfg.emotion_on, live=live,
                          wait_for_face=not live and video), "emotion")
    if video:
        from .stages.lip_features import LipFeatureExtractor

        add(LipFeatureExtractor())
    if video and t.has_audio and cfg.lip_gate != "off":
        from .stages.lip_gate import LipGate

        # before the captioner and the enhancer: both take its gains with the voice (offline it waits for the lips)
        add(LipGate(enabled=cfg.lip_gate is True, wait_for_lips=not live), "lip_gate")
    if cfg.meters:
        from .stages.taps import FacePresence, LevelMeter

        if video:
            add(FacePresence(), "face")
        add(LevelMeter("level_in"), "level_in")
    captioner = None
    if (cfg.captions or cfg.burn_captions) and t.has_audio:
        from .stages.captioner import Captioner

        captioner = Captioner(asr=cfg.asr, asr_model=cfg.asr_model, language=cfg.language, own_process=live,
                              wait_for_lips=not live and video, max_backlog_s=CAPTION_BACKLOG_S if live else None)
        roles["captioner"] = captioner
        if cfg.captions_from == "raw":  # before the enhancer: it hears the voice as recorded
            add(captioner)
    backend = cfg.enhance if cfg.enhance != "off" else default_enhancer() if cfg.controlled else "off"
    if backend != "off" and t.has_audio:
        from .stages.speech_enhancer import SpeechEnhancer

        add(SpeechEnhancer(backend, mode=cfg.enhance, clock=t.clock if live else None, compensate_delay=not live),
            "enhancer")
    if video and t.has_audio and available("sync_judge"):
        from .stages.sync_monitor import SyncMonitor

        add(SyncMonitor(), "sync")  # the call's audio-video offset, in telemetry
    if captioner is not None and cfg.captions_from != "raw":
        add(captioner)
    if cfg.burn_captions and video:
        from .stages.caption_burner import CaptionBurner

        add(CaptionBurner(live=live))
    out_size, fps = t.video_size, t.fps
    if video and cfg.avatar in (None, "off") and t.frame_rtp is not None:  # the page draws the overlay
        from .stages.landmarks import LandmarkSender

        add(LandmarkSender(t.frame_rtp), "overlay").enabled = cfg.overlay
    elif video and cfg.avatar in (None, "off"):  # the camera's video goes out: the overlay drawn on it
        from .stages.annotate import Annotator

        add(Annotator(), "overlay").enabled = cfg.overlay
        if cfg.emotion:
            from .stages.mood import MoodOverlay

            add(MoodOverlay())  # over the mesh: the reading drawn in a corner
    if cfg.meters:
        from .stages.taps import LevelMeter

        add(LevelMeter("level_out"), "level_out")
    if t.audio_out is not None:
        add(t.audio_out)
    if cfg.avatar:
        from .stages.talking_face import FPS as AVATAR_FPS

        add(talking_face(cfg.portrait, cfg.avatar, live=live), "avatar")
        if cfg.avatar != "off":
            out_size, fps = (256, 256), (AVATAR_FPS if cfg.avatar == "voice" else t.fps)
    shedder = None
    if live and t.has_audio:  # under load the optional work thins out, judged by how late the voice leaves
        shedder = LoadShedder(t.clock)
        for stage in stages:
            stage.shedder = shedder
        add(AudioProbe(shedder))
    if live and video and t.has_audio and t.audio_out is None:
        from .stages.av_align import AVAlign

        add(AVAlign(t.clock))  # last: the voice leaves as far behind its time as the picture does
    state = {"enhance": cfg.enhance if "enhancer" in roles else "off",
             "emotion": ("on" if cfg.emotion_on else "off") if "emotion" in roles else "unavailable",
             "avatar": cfg.avatar if "avatar" in roles else "unavailable",
             "lip_gate": ("open" if cfg.lip_gate is True else "off") if "lip_gate" in roles else "unavailable"}
    return Call(stages, out_size, fps, shedder, roles, state)


@dataclass
class WebRTCCall:
    """A call between WebRTC tracks: its pipeline, its stages and the outgoing tracks to add to the connection."""

    pipeline: object  # runner.Pipeline
    call: Call
    audio_out: object | None  # sinks.webrtc.OutgoingAudioTrack, when the peer sends audio
    video_out: object | None  # sinks.webrtc.OutgoingVideoTrack: the talking face's, when the call has one


def build_webrtc_call(cfg: CallConfig, tracks: dict, clock: SessionClock, send, on_state) -> WebRTCCall:
    """The call over a peer's incoming aiortc `tracks` ({"audio": ..., "video": ...}, either may be missing),
    for a served peer and a room worker alike: the sources, `build_call`'s stages with the voice's way out
    placed before the picture work, the overlay as landmarks for the page (stamped with each frame's RTP
    timestamp), the video track (the talking face's frames only) and the events at the end (`send` gets each
    event as JSON, `on_state` the stages' state events)."""
    from .runner import Pipeline
    from .sinks.webrtc import EventChannelSink, OutgoingAudioTrack, OutgoingVideoTrack, TrackSink
    from .sources.webrtc import WebRTCAudioSource, WebRTCVideoSource

    sources, audio_out, video_out, audio_sink, frame_rtp = [], None, None, None, None
    video, audio = "video" in tracks, "audio" in tracks
    if video:
        video_in = WebRTCVideoSource(tracks["video"], clock)
        sources.append(video_in)
        frame_rtp = video_in.rtp.get
    if audio:
        audio_in = WebRTCAudioSource(tracks["audio"], clock)
        sources.append(audio_in)
        audio_out = OutgoingAudioTrack(clock, audio_in.arrivals)
        audio_sink = TrackSink(audio_out)
    # the browser's camera size is known only from its frames: any size stands for "there is video"
    call = build_call(cfg, Transport(clock, (0, 0) if video else None, 30, audio, live=True, audio_out=audio_sink,
                                     frame_rtp=frame_rtp))
    on_state(call.state)  # what the page may offer from the start, before the stages have started
    enhancer = call.roles.get("enhancer")
    if audio_out is not None and enhancer is not None:  # the voice's content lags its pts by the suppressor's delay
        audio_out.content_lag = lambda: enhancer.telemetry.delay
    video_sink = []
    avatar = call.roles.get("avatar")
    if video and avatar is not None:  # video goes out only while the talking face draws it
        video_out = OutgoingVideoTrack()
        video_sink = [TrackSink(video_out, when=lambda: avatar.mode != "off")]
    stages = [*call.stages, *video_sink, EventChannelSink(send, on_state=on_state)]
    return WebRTCCall(Pipeline(sources, stages, live=True), call, audio_out, video_out)
