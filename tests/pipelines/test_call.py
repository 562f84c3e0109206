"""One call, built once: the stage lists of process (a file, the local devices), soak and a served peer all come
from `build_call`, printed and compared; what differs between them is what the transport says."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from avcall.app.process import ProcessConfig, call_config
from avcall.pipelines.asr import DEFAULT_ENGINE
from avcall.pipelines.call import CallConfig, Transport, build_call
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.features import available, default_enhancer

SIZE = (64, 48)


def names(stages) -> list[str]:
    return [s.name for s in stages]


def test_file_and_live_calls_differ_only_in_what_live_needs():
    enhance = default_enhancer()
    cfg = call_config(ProcessConfig(input=None, outdir=Path("out"), captions=True, emotion=True, enhance=enhance))
    offline = build_call(cfg, Transport(SessionClock(), SIZE, Fraction(25), has_audio=True, live=False))
    live = build_call(cfg, Transport(SessionClock(), SIZE, Fraction(25), has_audio=True, live=True))
    print("\n".join(live.describe()))
    assert names(live.stages) == names(offline.stages) + ["load_probe", "av_align"]
    assert offline.describe()[0].startswith(" 1. face_tracker (FaceTracker): VideoFrame")
    first = names(offline.stages)
    assert first.index("face_tracker") < first.index("emotion") < first.index("lip_features") < first.index("captioner")
    if enhance != "off":
        assert first.index("captioner") < first.index("speech_enhancer")  # captions hear the voice as configured
        assert offline.roles["enhancer"].compensate_delay and not live.roles["enhancer"].compensate_delay
    assert live.shedder is not None and offline.shedder is None


class FakePeerConnection:
    def __init__(self) -> None:
        self.tracks = []

    def addTrack(self, track) -> None:
        self.tracks.append(track)


def test_a_served_peer_runs_the_same_call():
    from avcall.app.serve import Peer, Server, ServeConfig

    server = Server(ServeConfig())
    server.load_models()
    peer = Peer(server, FakePeerConnection(), server.models.enhancers[-1], True)
    peer.tracks = {"audio": object(), "video": object()}
    peer.build()
    served = names(peer.line.pipeline.stages)
    emotion, avatar = server.models.emotion is not None, available("talking_face")
    cfg = CallConfig(max_faces=1, enhance=server.models.enhancers[-1], controlled=True, captions=True,
                     emotion=emotion, emotion_on=False, emotion_models=server.models.emotion,
                     avatar="off" if avatar else None, meters=True)
    sink = peer.line.pipeline.stages[served.index("webrtc_audio_out")]
    expected = build_call(cfg, Transport(SessionClock(), SIZE, 30, True, live=True, audio_out=sink,
                                         frame_rtp=lambda pts: None))
    print("\n".join(expected.describe()))
    # the overlay goes to the page as landmarks; video goes out only where the talking face can draw it
    assert served == names(expected.stages) + ["webrtc_video_out"] * avatar + ["data_channel_out"]
    assert "landmarks" in served and "annotate" not in served and "mood" not in served
    assert (peer.line.video_out is not None) == avatar
    assert served.index("level_out") + 1 == served.index("webrtc_audio_out")  # the voice leaves, metered
    if avatar:
        assert served.index("webrtc_audio_out") < served.index("talking_face")  # before the face is drawn
    assert {"level_in", "level_out", "face", "overlay"} <= set(peer.line.call.roles)
    # before any stage has started, the page is told what the call has (a first telemetry can come that early)
    assert peer.line.state["avatar"] == ("off" if avatar else "unavailable")
    assert peer.line.state["emotion"] == ("off" if emotion else "unavailable")
    assert peer.line.state["enhance"] == peer.enhance
    assert "av_align" not in served  # the browser plays the tracks with its own buffers
    # the served page's captions come from the default recogniser, as those of a file or a live call do
    assert peer.line.call.roles["captioner"].spec == (DEFAULT_ENGINE, None, "en")  # in English unless asked


def test_the_soak_runs_the_call_of_process(tmp_path):
    from avcall.app.soak import Outputs, SoakConfig, _pipeline, make_loop_clip

    clip = make_loop_clip(tmp_path)
    clock = SessionClock()
    pipeline, source = _pipeline(clip, SoakConfig(minutes=1, out=tmp_path, avatar=False), clock, Outputs())
    info = source.info
    soaked = [n for n in names(pipeline.stages) if not n.startswith("soak_")]
    cfg = ProcessConfig(input=clip, outdir=tmp_path, enhance=default_enhancer(), captions=True,
                        emotion=available("emotion"))
    expected = build_call(call_config(cfg),
                          Transport(clock, (info.width, info.height), info.fps, True, live=True))
    assert soaked == names(expected.stages)


def test_three_served_peers_share_one_session_per_model():
    import asyncio

    from avcall.app.serve import Peer, Server, ServeConfig
    from avcall.pipelines.runtime import session_count

    server = Server(ServeConfig(captions=False))
    server.load_models()
    models = ("speech_enhancer", "sync_monitor", "talking_face", "emotion")

    async def start_models(peer) -> None:
        for stage in peer.line.pipeline.stages:
            if stage.name in models:
                await stage.start()

    counts, peers = [], []
    for _ in range(3):
        peer = Peer(server, FakePeerConnection(), server.models.enhancers[-1], True)
        peer.tracks = {"audio": object(), "video": object()}
        peer.build()
        asyncio.run(start_models(peer))
        peers.append(peer)
        counts.append(session_count())
    assert counts[0] == counts[1] == counts[2] > 0  # the second and third peers opened no session
    from avcall.pipelines.runtime import _sessions

    opened = {Path(key[0]).name for key in _sessions}
    assert not available("sync_judge") or {"sync_lips.onnx", "sync_audio.onnx"} <= opened  # the judge's too
    for peer in peers:
        for stage in peer.line.pipeline.stages:
            stage.shutdown_worker()
