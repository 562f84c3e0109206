"""The corpus maker: deterministic, parts that sum, SNRs as asked, voices, roles and lips that behave."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avcall.models.data.shared_data import shared_data_dir
from avcall.models.data.example import CHANNELS, FULL_SCALE, example_names, read_example
from avcall.pipelines.face.lip_model import LipModel, Speaker
from avcall.models.data.make import MakeConfig, make_corpus, plans
from avcall.models.data.mix import Recipe, VoicePool
from avcall.pipelines.face.phonemes import Phone, Timing
from avcall.models.data.stats import corpus_stats
from avcall.models.data.tts import available_voices, synthesize
from avcall.models.data.voices import real_utterances
from tests.conftest import run_cli

DATA = shared_data_dir()
REAL = DATA / "speech_train" if DATA and (DATA / "speech_train" / "MANIFEST.tsv").is_file() else None


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    make_corpus(MakeConfig(out=out, minutes=0.5, seed=7, workers=2, real_voices=REAL, video_share=0.0))
    return out


def test_same_seed_gives_byte_identical_corpus_whatever_the_workers(small_corpus, tmp_path):
    again = tmp_path / "again"
    make_corpus(MakeConfig(out=again, minutes=0.5, seed=7, workers=1, real_voices=REAL, video_share=0.0))
    assert tree_digest(small_corpus) == tree_digest(again)
    other = tmp_path / "other"
    make_corpus(MakeConfig(out=other, minutes=0.2, seed=8, workers=2, real_voices=REAL, video_share=0.0))
    first = "examples/000000.flac"
    assert tree_digest(other)[first] != tree_digest(small_corpus)[first]


def power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def test_parts_sum_to_the_mixture_and_snrs_are_as_asked(tmp_path):
    out = tmp_path / "mix"
    recipe = Recipe(interferer_share=1.0, noise_share=1.0, reverb_share=0.5)
    make_corpus(MakeConfig(out=out, minutes=0.4, seed=3, workers=2, real_voices=REAL, video_share=0.0,
                           recipe=recipe))
    names = example_names(out)
    assert len(names) >= 4
    for name in names:
        data, rate = sf.read(out / "examples" / f"{name}.flac", dtype="int16", always_2d=True)
        assert rate == 16000 and data.shape[1] == len(CHANNELS)
        parts = data.astype(np.int32)
        # exact, in integer samples
        assert np.array_equal(parts[:, 0], parts[:, 1] + parts[:, 2] + parts[:, 3])
        assert np.abs(parts[:, 0]).max() <= FULL_SCALE
        ex = read_example(out / "examples", name)
        target, talker, noise = ex.audio["target"], ex.audio["interferer"], ex.audio["noise"]
        assert abs(power_db(target) - power_db(talker) - ex.meta["interferer"]["sir_db"]) < 0.5
        assert abs(power_db(target) - power_db(noise) - ex.meta["noise"]["snr_db"]) < 0.5
        assert 0 <= ex.meta["interferer"]["sir_db"] <= 5 and -5 <= ex.meta["noise"]["snr_db"] <= 20
        assert ex.meta["text"] and ex.meta["timing"]["phones"]
        assert ex.meta["interferer"]["voice"] != ex.meta["target"]["voice"]


def test_at_least_twelve_voices_each_with_phone_timing_that_fits_its_audio():
    voices = available_voices()
    engines = Counter(v.engine for v in voices)
    assert len(voices) >= 12 and set(engines) == {"flite", "festival", "espeak"}, engines
    for engine in engines:
        voice = next(v for v in voices if v.engine == engine)
        speech = synthesize(voice, "Please put the red box on the table.")
        phones = speech.timing.phones
        seconds = len(speech.audio) / 16000
        assert phones[0].start == 0 and abs(phones[-1].end - seconds) < 0.02
        assert all(a.end == pytest.approx(b.start) for a, b in zip(phones, phones[1:]))
        speaking = np.zeros(len(speech.audio), bool)
        for p in phones:
            if p.phone != "sil":
                speaking[int(p.start * 16000):int(p.end * 16000)] = True
        energy = speech.audio.astype(np.float64) ** 2
        # the timing says where the voice is: nearly all the energy lies inside the spoken phones
        assert energy[speaking].sum() > 0.97 * energy.sum(), voice.id
        assert [p.phone for p in phones if p.phone != "sil"][:3] == ["p", "l", "iy"], voice.id


def test_lips_close_for_pbm_round_for_uw_and_move_before_the_sound():
    model = LipModel.load()
    phones, t = [], 0.0
    for name, dur in [("sil", 0.4), ("aa", 0.2), ("m", 0.1), ("aa", 0.2), ("w", 0.08), ("uw", 0.2),
                      ("iy", 0.2), ("sil", 0.4)]:
        phones.append(Phone(name, t, t + dur))
        t += dur
    timing = Timing(tuple(phones))
    fps = 100.0
    track = model.track(timing, int(t * fps), np.random.default_rng(0), fps=fps, artefacts=False)
    at = lambda s: int(s * fps)  # noqa: E731
    # closure: the mouth closes on m between two open vowels
    assert track.opening[at(0.65)] < 0.5 * min(track.opening[at(0.5)], track.opening[at(0.8)])
    # rounding: narrower on uw than on iy
    assert track.width[at(1.08)] < track.width[at(1.28)] - 0.02
    # anticipation: the mouth is already opening before the first vowel sounds (at 0.4 s)
    rest = track.opening[at(0.1)]
    assert track.opening[at(0.37)] > rest + 0.15 * (track.opening[at(0.5)] - rest)
    # no snapping: at 100 fps the opening never jumps by more than a fifth of its range in 10 ms
    assert np.abs(np.diff(track.opening)).max() < 0.2 * np.ptp(track.opening)


def test_mouth_anticipates_a_vowel_by_50_to_120_ms():
    """The fitted model's mouth starts opening (10% of the way) 50-120 ms before a 100 ms vowel sounds."""
    model = LipModel.load()
    timing = Timing((Phone("sil", 0.0, 0.4), Phone("aa", 0.4, 0.5), Phone("sil", 0.5, 1.2)))
    speaker = Speaker(np.ones(2), 1.0, model.lead, model.tau, 0.0, np.zeros(len(model.identity_std)))
    fps = 1000.0
    opening = model.track(timing, int(1.2 * fps), np.random.default_rng(0), speaker, fps=fps, artefacts=False).opening
    rest, peak = opening[50], opening.max()
    onset = np.argmax(opening > rest + 0.1 * (peak - rest)) / fps
    assert 0.05 <= 0.4 - onset <= 0.12, 0.4 - onset


@pytest.mark.skipif(REAL is None, reason="../shared/data/speech_train is absent")
def test_every_source_is_both_target_and_competing_talker_at_the_recipe_shares():
    pool = VoicePool(available_voices(), real_utterances(REAL))
    cfg = MakeConfig(out=Path("unused"), minutes=1, seed=0, real_voices=REAL)
    planned = [p for _, p in zip(range(1000), plans(cfg, pool))]
    targets = Counter(p.target_source for p in planned)
    talkers = Counter(p.interferer_source for p in planned if p.interferer_source)
    assert set(targets) == set(talkers) == {"flite", "festival", "espeak", "real"}
    assert abs(targets["real"] / len(planned) - Recipe().real_share) < 0.05
    assert abs(talkers["real"] / sum(talkers.values()) - Recipe().real_share) < 0.05
    # real targets go round the speakers before any speaker comes back
    speakers = [pool.real[p.real_index].speaker for p in planned if p.real_index is not None]
    n_speakers = len({u.speaker for u in pool.real})
    assert len(set(speakers[:n_speakers])) == n_speakers


def test_stats_report_sources_roles_and_shares(small_corpus):
    stats = corpus_stats(small_corpus, realism=False)
    assert stats["examples"] == len(example_names(small_corpus))
    assert stats["minutes"] >= 0.5
    assert sum(stats["target_minutes_by_source"].values()) == pytest.approx(stats["minutes"], abs=0.05)
    assert 0 < stats["share_with_competing_talker"] <= 1
    assert stats["lip_audio_r_mean"] > 0.1  # lips open with the voice
    if REAL is not None:
        assert stats["real_target_speakers"] >= 1 and "real" in stats["target_minutes_by_source"]


def test_corpus_holds_no_file_of_shared_data(small_corpus):
    if DATA is None:
        pytest.skip("../shared/data is absent")
    theirs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in DATA.rglob("*")
              if p.is_file() and p.stat().st_size > 0}
    ours = set(tree_digest(small_corpus).values())
    assert not ours & theirs
    assert not any(p.is_symlink() for p in small_corpus.rglob("*"))


def test_cli_make_refuses_a_non_empty_folder_and_stats_a_non_corpus(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = run_cli("corpus", "make", "--minutes", "0.1", "--out", str(tmp_path / "full"))
    assert r.returncode == 2 and "not empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("corpus", "stats", str(tmp_path))
    assert r.returncode == 2 and "not a corpus" in r.stderr


def test_cli_stats_json(small_corpus):
    r = run_cli("corpus", "stats", str(small_corpus), "--json", "--no-realism")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    for key in ("target_minutes_by_source", "interferer_minutes_by_source", "real_target_speakers", "snr_db_histogram"):
        assert key in stats
    assert json.loads((small_corpus / "stats.json").read_text()) == stats


def test_import_turns_talking_face_videos_into_examples(tmp_path):
    """A talking-face video made here (a flite voice, the lip model, the renderer) with a transcript beside
    it comes back through `avcall corpus import` as an example whose measured lips follow the driving ones."""
    from avcall.pipelines.face.render import render_video

    text = "lay blue at f two now please"
    speech = synthesize(next(v for v in available_voices() if v.id == "flite:slt"), text)
    n_frames = int(np.ceil(len(speech.audio) / 16000 * 25))
    driving = LipModel.load().track(speech.timing, n_frames, np.random.default_rng(0), artefacts=False)
    videos = tmp_path / "videos"
    videos.mkdir()
    render_video(videos / "talk.mp4", driving, speech.audio * 0.5)
    (videos / "talk.txt").write_text(f"Text:  {text.upper()}\nConf:  5\n")
    (videos / "notes.mp4").write_text("not a video")  # skipped with its reason, not fatal
    out = tmp_path / "imported"
    r = run_cli("corpus", "import", str(videos), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "skipped 1" in r.stdout
    [name] = example_names(out)
    ex = read_example(out / "examples", name)
    assert ex.meta["text"] == text and ex.meta["timing"]["method"].startswith("align:pocketsphinx")
    words = [w[0] for w in ex.meta["timing"]["words"]]
    assert words == text.split()
    n = min(len(ex.lips), len(driving))
    assert ex.lips.face_present[:n].mean() > 0.95
    assert np.corrcoef(ex.lips.opening[:n], driving.opening[:n])[0, 1] > 0.8
    assert np.array_equal(ex.audio["mixture"], ex.audio["target"]) and not ex.audio["noise"].any()


@pytest.mark.skipif(DATA is None, reason="../shared/data is absent")
def test_lip_model_predicts_real_mouths_from_phone_timing():
    """On the transcribed real talking faces, the mouth opening predicted from each clip's aligned phones
    follows the tracker's measurement, scored by a model refitted without the clip (leave one out)."""
    from avcall.models.data.fit_lips import _pca, leave_one_out, load_clips, K_MODES

    model = LipModel.load()
    clips = load_clips(DATA, log=lambda s: None)
    modes, _ = _pca(clips, K_MODES)
    per_clip = leave_one_out(clips, modes, model.lead, model.tau)
    print("leave-one-out r per clip:", {k: round(v, 2) for k, v in per_clip.items()})
    assert np.mean(list(per_clip.values())) >= 0.55
    assert all(r > 0.2 for r in per_clip.values())
