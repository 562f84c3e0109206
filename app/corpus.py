"""`avcall corpus ...`: make, inspect and import training corpora (the data engine, models/data/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm

from avcall.pipelines.errors import InputError

from avcall.models.data.shared_data import shared_data_dir


def default_real_voices() -> Path | None:
    data = shared_data_dir()
    folder = data / "speech_train" if data else None
    return folder if folder and (folder / "MANIFEST.tsv").is_file() else None


def add_parser(commands) -> None:
    c = commands.add_parser("corpus", help="make, inspect or import a training corpus",
                            description="The project's own audio-visual speech corpus: voices with phone "
                            "timing, lips that move with them, rendered faces, noise, rooms and competing "
                            "talkers. See docs/corpus.md.")
    sub = c.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    m = sub.add_parser("make", help="make a corpus", description="Make MINUTES of examples into OUT "
                       "(a new folder). The same command gives the same files, byte for byte.")
    m.add_argument("--minutes", type=float, required=True, help="minutes of audio to make")
    m.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: all cores)")
    m.add_argument("--real-voices", type=Path, metavar="DIR",
                   help="real read speech in the speech_train layout (default ../shared/data/speech_train "
                   "when it exists)")
    m.add_argument("--no-real-voices", action="store_true", help="text-to-speech voices only")
    m.add_argument("--video-share", type=float, default=0.05,
                   help="share of examples also rendered as a talking-portrait mp4 (default 0.05)")
    m.add_argument("--portrait", type=Path, metavar="PATH", help="photo to animate (default: the astronaut "
                   "portrait bundled with scikit-image)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("stats", help="what a corpus holds and how real it is",
                       description="Print a corpus's figures (hours, voices, sources, SNRs, shares, lip "
                       "realism) and write them to DIR/stats.json.")
    s.add_argument("dir", type=Path, help="corpus folder")
    s.add_argument("--json", action="store_true", help="print the JSON object instead of the summary")
    s.add_argument("--no-realism", action="store_true", help="skip the realism checks on ../shared/data "
                   "and the rendered videos (faster)")

    i = sub.add_parser("import", help="turn a folder of talking-face videos into corpus examples",
                       description="Track and align each video of VIDEO_DIR (transcripts from a .txt "
                       "beside each video, LRS style or plain; recognised when absent) into OUT.")
    i.add_argument("video_dir", type=Path, help="folder of videos (searched recursively)")
    i.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")

    f = sub.add_parser("fit-lips", help="fit the lip-shape model on the real talking faces",
                       description="Fit the lip model (mean mouth, modes, viseme targets, timing) on the "
                       "tracker's output for the transcribed talking faces in ../shared/data and write "
                       "pipelines/face/lip_model.json.")
    f.add_argument("--out", type=Path, help="where to write the model (default: the shipped lip_model.json)")


def cmd_corpus(args) -> int:
    return {"make": _make, "stats": _stats, "import": _import, "fit-lips": _fit}[args.corpus_command](args)


def _make(args) -> int:
    from avcall.models.data.make import MakeConfig, check_new_folder, make_corpus

    real = None if args.no_real_voices else (args.real_voices or default_real_voices())
    if args.real_voices and not (args.real_voices / "MANIFEST.tsv").is_file():
        raise InputError(f"--real-voices {args.real_voices}: no MANIFEST.tsv there (the speech_train layout)")
    if not 0 <= args.video_share <= 1:
        raise InputError("--video-share must be between 0 and 1")
    if args.portrait and not args.portrait.is_file():
        raise InputError(f"--portrait {args.portrait}: no such file")
    check_new_folder(args.out)
    cfg = MakeConfig(out=args.out, minutes=args.minutes, seed=args.seed, workers=max(1, args.workers),
                     real_voices=real, video_share=args.video_share, portrait=args.portrait)
    bar = tqdm(total=round(args.minutes * 60), unit="s", desc="corpus", disable=args.quiet)

    def progress(done: float, total: float) -> None:
        bar.update(round(done) - bar.n)

    summary = make_corpus(cfg, progress)
    bar.close()
    print(f"wrote {summary['examples']} examples, {summary['seconds'] / 60:.1f} min, "
          f"{len(summary['voices'])} TTS voices + {summary['real_voices']} real utterances, into {args.out}")
    return 0


def _stats(args) -> int:
    from avcall.models.data.stats import corpus_stats
    from avcall.pipelines.sinks.atomic import write_text_atomic

    if not (args.dir / "examples").is_dir():
        raise InputError(f"{args.dir}: not a corpus (no examples/ folder)")
    stats = corpus_stats(args.dir, realism=not args.no_realism,
                         log=(lambda s: None) if args.json else (lambda s: print(s, flush=True)))
    text = json.dumps(stats, indent=1)
    write_text_atomic(args.dir / "stats.json", text + "\n")
    if args.json:
        print(text)
    else:
        print(summary_text(stats))
    return 0


def summary_text(s: dict) -> str:
    lines = [f"{s['corpus']}: {s['examples']} examples, {s['minutes']} min ({s['hours']} h)",
             f"voices: {s['voices']} ({len(s['tts_voices'])} text-to-speech, {s['real_target_speakers']} real speakers)",
             f"target minutes by source: {s['target_minutes_by_source']}",
             f"competing-talker minutes by source: {s['interferer_minutes_by_source']}",
             f"with a competing talker {s['share_with_competing_talker']:.0%}, with noise {s['share_with_noise']:.0%}, "
             f"reverberant {s['share_reverberant']:.0%}, with a missing-face stretch {s['share_with_missing_face']:.0%}",
             f"SNR histogram (dB): {s['snr_db_histogram']}",
             f"lip-audio correlation (mean r per example): {s['lip_audio_r_mean']}"]
    realism = s.get("realism")
    if realism:
        rc = realism["real_clips"]
        if isinstance(rc, dict):
            lines.append(f"lips vs real faces: mean r {rc['opening_r_mean_leave_one_out']} (leave one clip out), "
                         f"{rc['opening_r_mean_shipped_model']} (shipped model)")
        rt = realism["round_trip"]
        if isinstance(rt, dict):
            lines.append(f"rendered faces through the tracker: mean r {rt['opening_r_mean']} "
                         f"over {len(rt['videos'])} videos")
    lines.append(f"(all figures in {s['corpus']}/stats.json)")
    return "\n".join(lines)


def _import(args) -> int:
    from avcall.models.data.importer import import_videos
    from avcall.models.data.make import check_new_folder

    if not args.video_dir.is_dir():
        raise InputError(f"{args.video_dir}: no such folder")
    check_new_folder(args.out)
    bar = tqdm(unit="video", desc="import")

    def progress(i: int, n: int, name: str) -> None:
        bar.total = n
        bar.set_postfix_str(name)
        bar.update(i - bar.n)

    summary = import_videos(args.video_dir, args.out, progress)
    bar.close()
    print(f"imported {summary['examples']} videos ({summary['seconds'] / 60:.1f} min) into {args.out}"
          + (f"; skipped {len(summary['skipped'])}: {summary['skipped']}" if summary["skipped"] else ""))
    return 0


def _fit(args) -> int:
    from avcall.models.data.fit_lips import fit
    from avcall.pipelines.face.lip_model import MODEL_PATH

    data = shared_data_dir()
    if data is None:
        raise InputError("../shared/data is absent: the lip model is fitted on its talking faces")
    model = fit(data)
    path = args.out or MODEL_PATH
    model.save(path)
    print(f"wrote {path}: leave-one-clip-out mean r {model.fit['opening_r_leave_one_out_mean']}")
    return 0
