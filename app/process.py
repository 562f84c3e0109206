"""`avcall process`: the pipeline over a file (or the local camera and microphone) into an output folder.

Writes `annotated.mp4` (mesh and lip outline drawn, the input's audio), `lips.npz` (pts, lip features,
face-present flag per video frame) and `telemetry.json` (per-stage latency and counts). With `enhance` (a
noise suppressor's name), the audio goes through the SpeechEnhancer: `enhanced.wav` (16-bit PCM unless
`wav_subtype` says otherwise) is written and annotated.mp4 carries the enhanced audio. From a file the
suppressor's delay is taken off (the outputs line up with the input sample for sample); live it is kept.
With `captions`, the Captioner listens to that (enhanced) audio: `captions.vtt` and `captions.srt`, and
with `burn_captions` the lines are drawn on annotated.mp4. With `emotion`, the EmotionReader reads face and
voice: `emotion.jsonl` and the `emotion.png` timeline, and the mood indicator is drawn on the video.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from avcall.pipelines.call import CallConfig, Transport, build_call
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.errors import AvcallError, InputError
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sinks.atomic import write_text_atomic
from avcall.pipelines.sinks.lips import LipsSink
from avcall.pipelines.sinks.mp4 import Mp4Sink
from avcall.pipelines.sinks.pulse import PulseSink
from avcall.pipelines.sinks.speaker import SpeakerSink
from avcall.pipelines.sinks.virtual_camera import VirtualCameraSink
from avcall.pipelines.sinks.wav import WavSink
from avcall.pipelines.sinks.window import WindowSink
from avcall.pipelines.sources.camera import CameraSource
from avcall.pipelines.sources.file import FileSource
from avcall.pipelines.sources.microphone import MicrophoneSource
from avcall.pipelines.sources.pulse import PulseSource
from avcall.pipelines.stages.echo_control import EchoControl

from .outputs import StagedOutput


@dataclass
class ProcessConfig:
    input: Path | None  # None: live from --camera / --mic
    outdir: Path
    camera: int | str | None = None
    mic: int | str | None = None
    seconds: float | None = None  # live capture length; None: until Ctrl-C
    max_faces: int = 2
    face_model: Path | None = None
    show: bool = False
    play: bool = False
    speaker: int | str | None = None
    # the SpeechEnhancer's backend (pipelines/suppressors: "dtln", ...) or "off"; with one, enhanced.wav is
    # written and annotated.mp4's audio is enhanced
    enhance: str = "off"
    wav_subtype: str = "PCM_16"  # enhanced.wav's sample format (soundfile's names: PCM_16, FLOAT, ...)
    captions: bool = False  # the Captioner: captions.vtt and captions.srt
    burn_captions: bool = False  # ... and drawn on annotated.mp4
    asr: str = "whisper"  # the captioner's engine (asr.ENGINES, or package.module:Class)
    asr_model: Path | None = None
    language: str = "en"  # the captions' language (a Whisper code, or "auto")
    # what the captioner hears: the voice as recorded, or after the enhancer. "raw": Whisper makes fewer errors
    # on it than after DTLN (bench/captions_eval_raw_vs_enhanced.json, the README)
    captions_from: str = "raw"
    # "voice": the outgoing video is the portrait speaking with the (enhanced) voice; "reenact": the portrait
    # moved by the camera's tracked face through the landmark codec (by the voice while no face is seen)
    avatar: str | None = None
    portrait: Path | None = None  # the photo for --avatar (default: the bundled one)
    emotion: bool = False  # the EmotionReader: emotion.jsonl and the emotion.png timeline
    # the lip gate (another voice held back while the speaker's lips are still), wherever there is a camera feed
    lip_gate: bool = True
    # False: the readings are only shown (`avcall live` without --record), never written, not even to scratch
    keep_emotion: bool = True
    # `avcall live` on a sound server (pipelines/pulse.py): `mic` is a server source's name, the voice is also
    # played into `voice_sink` (the avcall microphone's sink), and with `far_end` (a sink's monitor) the echo
    # of what that sink plays is cancelled by `echo` (pipelines/echo.py) before any other stage hears the voice
    mic_from_server: bool = False
    voice_sink: str | None = None
    far_end: str | None = None
    echo: str = "aec3"
    # the outgoing video to a virtual camera: "auto" (the first free one), a device, "file:PATH" (tests)
    camera_out: str | None = None


@dataclass
class ProcessResult:
    outdir: Path
    media_seconds: float
    video_frames: int
    face_frames: int
    interrupted: bool
    telemetry: dict


def call_config(cfg: ProcessConfig) -> CallConfig:
    """The call `cfg` asks for (its I/O aside)."""
    return CallConfig(max_faces=cfg.max_faces, face_model=cfg.face_model, enhance=cfg.enhance, captions=cfg.captions,
                      burn_captions=cfg.burn_captions, asr=cfg.asr, asr_model=cfg.asr_model, language=cfg.language,
                      captions_from=cfg.captions_from, avatar=cfg.avatar, portrait=cfg.portrait, emotion=cfg.emotion,
                      lip_gate=True if cfg.lip_gate else "off")


async def process(cfg: ProcessConfig, *, progress: bool = True) -> ProcessResult:
    clock = SessionClock()
    with StagedOutput(cfg.outdir) as tmp:
        sources, video_size, fps, has_audio, total = await _open_sources(cfg, clock)
        if cfg.avatar == "voice" and not has_audio:
            raise InputError("--avatar voice: there is no voice to drive the face")
        if cfg.avatar == "reenact" and video_size is None:
            raise InputError("--avatar reenact: there is no camera video whose face would drive the portrait")
        if cfg.enhance != "off" and not has_audio:
            raise InputError("--enhance: there is no audio to enhance (" +
                             (f"{cfg.input} has no audio track)" if cfg.input else "give --mic)"))
        live = cfg.input is None
        call = build_call(call_config(cfg), Transport(clock, video_size, fps, has_audio, live))
        lips = LipsSink(tmp / "lips.npz")
        echo = ([EchoControl(cfg.far_end, clock=clock, canceller=cfg.echo)] if cfg.far_end and has_audio else [])
        stages = [*echo, *call.stages, Mp4Sink(tmp / "annotated.mp4", video_size=call.video_size, fps=call.fps,
                                        audio=has_audio)]
        if cfg.camera_out and call.video_size is not None:
            stages.append(virtual_camera(cfg.camera_out, call.video_size, call.fps))
        if cfg.show and call.video_size is not None:
            stages.append(WindowSink())
        if cfg.play and has_audio:
            stages.append(SpeakerSink(cfg.speaker))
        if cfg.voice_sink and has_audio:
            stages.append(PulseSink(cfg.voice_sink))
        stages.append(lips)
        if cfg.enhance != "off":
            stages.append(WavSink(tmp / "enhanced.wav", subtype=cfg.wav_subtype, name="enhanced_wav"))
        if cfg.captions or cfg.burn_captions:
            from avcall.pipelines.sinks.captions import CaptionSink

            stages.append(CaptionSink(tmp))
        if cfg.emotion and cfg.keep_emotion:
            from avcall.pipelines.sinks.emotion import EmotionSink

            stages.append(EmotionSink(tmp))
        pipeline = Pipeline(sources, stages, live=live)
        telemetry = await _run_with_progress(pipeline, sources, clock, cfg, total, progress)
        rows = lips.rows
        incidents = pipeline.incidents.summary()
        summary = {
            "input": str(cfg.input) if cfg.input else {"camera": cfg.camera, "mic": cfg.mic},
            "pipeline": pipeline.describe(),
            "interrupted": pipeline.interrupted,
            "video_frames": len(rows),
            "face_frames": sum(r.present for r in rows),
            "stages": telemetry,
            "incidents": incidents,
        }
        write_text_atomic(tmp / "telemetry.json", json.dumps(summary, indent=2))
    _warn_failed_stages(incidents)
    _warn_damaged_input(incidents)
    media_seconds = sources[0].decoded_until if isinstance(sources[0], FileSource) else clock.now()
    return ProcessResult(cfg.outdir, media_seconds, len(rows), summary["face_frames"], pipeline.interrupted,
                         telemetry)


def _warn_failed_stages(incidents: dict) -> None:
    """A stage that threw was passed by and the run went on: say so (telemetry.json has the details)."""
    for event in incidents["events"]:
        if event["kind"] == "stage_failed":
            times = incidents["counts"].get(f"stage_failed:{event['stage']}", 1)
            print(f"avcall: warning: {event['stage']} failed on {times} frame(s) and was passed through "
                  f"({event['error']})", file=sys.stderr)


def _warn_damaged_input(incidents: dict) -> None:
    """The decoder met damaged data (a file cut short, typically): processed as far as it goes, and said."""
    for event in incidents["events"]:
        if event["kind"] == "input_damaged":
            print(f"avcall: warning: {event['path']}: the input ends early or is damaged (damaged data at "
                  f"{event['pts']:.2f} s); processed up to {event['reached_s']:.2f} s", file=sys.stderr)
            return


def virtual_camera(out: str, size: tuple[int, int], fps) -> VirtualCameraSink:
    """The virtual camera `out` names: "auto", a device path, or "file:PATH" (the file-backed camera)."""
    if out.startswith("file:"):
        return VirtualCameraSink(size, float(fps), device=out[len("file:"):], backend="file")
    return VirtualCameraSink(size, float(fps), device=None if out == "auto" else out)


async def _open_sources(cfg: ProcessConfig, clock: SessionClock):
    """(sources, video size or None, fps, has audio, seconds expected or None)."""
    if cfg.input is not None:
        source = FileSource(cfg.input, clock=clock)
        info = source.info
        size = (info.width, info.height) if info.has_video else None
        return [source], size, info.fps, info.has_audio, info.duration
    sources, size = [], None
    if cfg.camera is not None:
        camera = CameraSource(cfg.camera, clock=clock)
        size = await camera.open()
        sources.append(camera)
    if cfg.mic is not None and cfg.mic_from_server:
        sources.append(PulseSource(None if cfg.mic == "default" else str(cfg.mic), clock=clock))
    elif cfg.mic is not None:
        sources.append(MicrophoneSource(None if cfg.mic == "default" else cfg.mic, clock=clock))
    return sources, size, 30, cfg.mic is not None, cfg.seconds


async def _run_with_progress(pipeline: Pipeline, sources, clock: SessionClock, cfg: ProcessConfig,
                             total: float | None, progress: bool) -> dict:
    """Runs the pipeline with a progress bar; the first Ctrl-C ends the input and keeps what was
    processed, a second one aborts."""
    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(pipeline.run())

    def on_interrupt() -> None:
        if pipeline.interrupted:
            run.cancel()
        else:
            print("\nstopping: finishing what was read (Ctrl-C again to abort)", file=sys.stderr)
            pipeline.end_input()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread (tests) or not a POSIX loop
        pass
    file_source = sources[0] if isinstance(sources[0], FileSource) else None
    bar = tqdm(total=round(total, 1) if total else None, unit="s", desc="processing", file=sys.stderr,
               disable=not progress or None, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]")
    try:
        while not run.done():
            if cfg.seconds is not None and file_source is None and clock.now() >= cfg.seconds:
                pipeline.end_input()
            done = file_source.decoded_until if file_source else clock.now()
            bar.update(max(0.0, round(done, 1) - bar.n))
            await asyncio.wait([run], timeout=0.2)
        return run.result()
    finally:
        bar.close()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


def run_process(cfg: ProcessConfig, *, progress: bool = True) -> ProcessResult:
    if cfg.input is None and cfg.camera is None and cfg.mic is None:
        raise AvcallError("nothing to process: give an INPUT file, or --camera N and/or --mic NAME")
    return asyncio.run(process(cfg, progress=progress))
