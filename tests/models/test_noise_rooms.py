"""The corpus maker's noises and rooms: each noise is what it claims to be, each RIR has the asked RT60."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from avcall.models.data.noise import NOISE_KINDS, NOISE_RMS, layer_second_kind, make_noise, mix_at_snr
from avcall.models.data.rooms import (
    DISTANCE,
    ROOM_SIZE,
    SPEED_OF_SOUND,
    Room,
    absorption,
    exponential_rir,
    image_method_rir,
    measured_rt60,
    random_room,
    reverberate,
)
from avcall.pipelines.frames import SAMPLE_RATE
from scipy import signal, stats

SR = SAMPLE_RATE
TEN_SECONDS = 10 * SR
SEEDS = range(6)


def tone_voices(count: int = 8, seconds: float = 1.5) -> list[np.ndarray]:
    """Stand-ins for utterances: each a tone of its own pitch (300, 500, 700 ... Hz), syllable-modulated."""
    t = np.arange(int(seconds * SR)) / SR
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return [(np.sin(2 * np.pi * (300 + 200 * i) * t) * syllables).astype(np.float32) for i in range(count)]


VOICES = tone_voices()


def noise(kind: str, seed: int = 0, n: int = TEN_SECONDS) -> np.ndarray:
    return make_noise(kind, n, np.random.default_rng(seed), VOICES)


def welch(x: np.ndarray, nperseg: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    return signal.welch(np.asarray(x, np.float64), SR, nperseg=nperseg)


def frame_levels_db(x: np.ndarray, seconds: float) -> np.ndarray:
    size = int(seconds * SR)
    frames = np.asarray(x[:len(x) // size * size], np.float64).reshape(-1, size)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def crest(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))


# --- every kind ---------------------------------------------------------------------------------------------


def test_the_spec_kinds_are_all_there() -> None:
    assert set(NOISE_KINDS) >= {"white", "pink", "brown", "blue", "modulated", "hum", "clicks", "keyboard",
                                "music", "fan", "babble"}


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_length_dtype_rms_finite(kind: str) -> None:
    for seed in SEEDS:
        x = noise(kind, seed)
        assert x.dtype == np.float32 and x.shape == (TEN_SECONDS,)
        assert np.all(np.isfinite(x))
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(NOISE_RMS, rel=1e-5)


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("n", [0, 1, 7, 1000, 16_001])
def test_short_and_odd_lengths(kind: str, n: int) -> None:
    x = noise(kind, n, n)
    assert x.dtype == np.float32 and x.shape == (n,) and np.all(np.isfinite(x))
    if np.any(x):
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(NOISE_RMS, rel=1e-5)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_deterministic_for_a_seed_different_across_seeds(kind: str) -> None:
    a, b, c = noise(kind, 7), noise(kind, 7), noise(kind, 8)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)


def test_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown noise kind"):
        make_noise("jackhammer", 100, rng)
    with pytest.raises(ValueError, match=">= 0"):
        make_noise("white", -1, rng)


# --- each kind has its character ----------------------------------------------------------------------------


def spectral_slope(x: np.ndarray) -> float:
    """Power ~ f**slope, fitted on a log-log Welch PSD between 100 Hz and 6 kHz."""
    f, p = welch(x)
    band = (f >= 100) & (f <= 6000)
    return float(np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0])


@pytest.mark.parametrize(("kind", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0), ("blue", 1.0)])
def test_coloured_noise_slopes(kind: str, slope: float) -> None:
    slopes = [spectral_slope(noise(kind, seed)) for seed in SEEDS]
    assert all(abs(s - slope) < 0.3 for s in slopes), slopes
    assert len(set(np.round(slopes, 3))) == len(slopes)  # the exponent is jittered per draw


def test_coloured_noises_are_ordered_by_steepness() -> None:
    for seed in SEEDS:
        blue, white, pink, brown = (spectral_slope(noise(k, seed)) for k in ("blue", "white", "pink", "brown"))
        assert blue > white + 0.5 > pink + 1.0 > brown + 1.5
        assert stats.kurtosis(noise("white", seed)) == pytest.approx(0.0, abs=0.1)  # Gaussian


def test_hum_peaks_at_the_mains_frequency() -> None:
    mains = set()
    for seed in range(12):
        f, p = welch(noise("hum", seed), nperseg=SR)  # 1 Hz bins
        peak = f[np.argmax(p)]
        assert min(abs(peak - 50), abs(peak - 60)) <= 1, peak
        assert 10 * np.log10(p.max() / np.median(p)) > 40  # a line far above the faint hiss
        mains.add(50 if abs(peak - 50) <= 1 else 60)
        harmonic = p[np.argmin(np.abs(f - 2 * peak))]
        assert harmonic < p.max()
    assert mains == {50, 60}


@pytest.mark.parametrize("kind", ["clicks", "keyboard"])
def test_impulsive_kinds(kind: str) -> None:
    for seed in SEEDS:
        x = noise(kind, seed)
        assert stats.kurtosis(x) > 20
        assert crest(x) > 10
    white = noise("white")
    assert stats.kurtosis(white) < 0.2 and crest(white) < 6


def test_keyboard_is_struck_at_an_irregular_typing_rhythm() -> None:
    for seed in SEEDS:
        levels = frame_levels_db(noise("keyboard", seed), 0.005)
        loud = levels > levels.max() - 25
        onsets = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
        per_second = len(onsets) / 10
        intervals = np.diff(onsets) * 0.005
        assert 1 <= per_second <= 25, per_second
        assert np.std(intervals) / np.mean(intervals) > 0.3  # irregular, not a metronome
        assert np.mean(loud) < 0.5  # mostly quiet between strokes


def test_modulated_noise_has_a_wandering_level() -> None:
    for seed in SEEDS:
        assert np.std(frame_levels_db(noise("modulated", seed), 0.1)) > 2.5
    assert np.std(frame_levels_db(noise("white"), 0.1)) < 0.5


def test_music_is_tonal_and_changes_notes() -> None:
    for seed in SEEDS:
        x = noise("music", seed).astype(np.float64)
        _, p = welch(x)
        flatness = np.exp(np.mean(np.log(p + 1e-30))) / np.mean(p)
        assert flatness < 0.01  # lines, not a continuum (white noise: about 0.56)
        frames = x[:len(x) // 4000 * 4000].reshape(-1, 4000)  # 250 ms
        pitches = np.argmax(np.abs(np.fft.rfft(frames * np.hanning(4000), axis=1)), axis=1)
        assert len(set(pitches.tolist())) >= 3
    _, p = welch(noise("white"))
    assert np.exp(np.mean(np.log(p))) / np.mean(p) > 0.4


def test_fan_is_low_passed_with_a_blade_tone() -> None:
    for seed in SEEDS:
        f, p = welch(noise("fan", seed), nperseg=SR)
        low, high = p[(f >= 100) & (f < 1000)].mean(), p[(f >= 4000) & (f < 8000)].mean()
        assert 10 * np.log10(low / high) > 10
        blade = (f >= 25) & (f <= 260)
        tone = f[blade][np.argmax(p[blade])]
        around = (f > tone - 30) & (f < tone + 30)
        assert 10 * np.log10(p[blade].max() / np.median(p[around])) > 8


def power_share(x: np.ndarray, below_hz: float) -> float:
    f, p = welch(x)
    return float(p[f < below_hz].sum() / p.sum())


def test_engine_is_a_low_rumble_with_firing_harmonics() -> None:
    for seed in SEEDS:
        x = noise("engine", seed)
        assert power_share(x, 700) > 0.9
        f, p = welch(x, nperseg=SR)
        band = (f >= 18) & (f <= 95)
        assert 10 * np.log10(p[band].max() / np.median(p[band])) > 6  # a firing tone stands out


def test_traffic_swells_as_vehicles_pass() -> None:
    for seed in SEEDS:
        x = noise("traffic", seed)
        assert power_share(x, 3000) > 0.8
        levels = frame_levels_db(x, 0.25)
        assert np.ptp(levels) > 2  # louder as a vehicle passes, quieter between


def test_clatter_rings_high_and_strikes() -> None:
    for seed in SEEDS:
        x = noise("clatter", seed)
        assert power_share(x, 700) < 0.2
        assert crest(x) > 6


def test_shaped_noises_differ_in_colour() -> None:
    tilts = []
    for seed in SEEDS:
        f, p = welch(noise("shaped", seed))
        tilts.append(10 * np.log10(p[(f > 100) & (f < 1000)].mean() / p[(f > 2000) & (f < 7000)].mean()))
    assert np.ptp(tilts) > 6


def test_layering_keeps_the_level_and_adds_a_second_kind() -> None:
    rng = np.random.default_rng(0)
    bed = noise("engine")
    layered, second = layer_second_kind(bed, rng)
    assert second in NOISE_KINDS and second != "babble"
    assert np.sqrt(np.mean(layered.astype(np.float64) ** 2)) == pytest.approx(NOISE_RMS, rel=1e-3)
    assert not np.allclose(layered, bed)


def test_babble_mixes_at_least_three_looped_voices() -> None:
    counts = set()
    for seed in range(12):
        x = noise("babble", seed)
        _, p = welch(x, nperseg=SR)
        floor = np.median(p)
        present = [i for i in range(len(VOICES)) if p[300 + 200 * i] > 1000 * floor]
        assert 3 <= len(present) <= 8
        counts.add(len(present))
        assert frame_levels_db(x, 0.2).min() > 10 * np.log10(NOISE_RMS**2) - 20  # looped: never falls silent
    assert len(counts) > 1  # the number of voices is drawn


def test_babble_with_exactly_three_voices_uses_all_three() -> None:
    x = make_noise("babble", TEN_SECONDS, np.random.default_rng(0), VOICES[:3])
    _, p = welch(x, nperseg=SR)
    assert all(p[300 + 200 * i] > 1000 * np.median(p) for i in range(3))


@pytest.mark.parametrize("count", [0, 1, 2])
def test_babble_needs_three_voices(count: int) -> None:
    with pytest.raises(ValueError, match="at least 3 voices"):
        make_noise("babble", SR, np.random.default_rng(0), VOICES[:count])


def test_noises_are_fast() -> None:
    for kind in NOISE_KINDS:
        seconds = []
        for seed in range(3):
            start = time.perf_counter()
            noise(kind, seed)
            seconds.append(time.perf_counter() - start)
        assert min(seconds) < 0.1, kind  # 10 s of noise; about 10 ms on one core


# --- mixing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [-10.0, -2.5, 0.0, 5.0, 12.3, 30.0])
def test_mix_at_snr(snr_db: float) -> None:
    rng = np.random.default_rng(1)
    speech = (rng.standard_normal(SR) * np.hanning(SR) * 0.2).astype(np.float32)
    for kind in ("white", "clicks", "hum"):
        n = make_noise(kind, SR, rng)
        scaled = mix_at_snr(speech, n, snr_db)
        assert scaled.dtype == np.float32 and scaled.shape == n.shape
        got = 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(scaled.astype(np.float64) ** 2))
        assert got == pytest.approx(snr_db, abs=0.01)
        ratio = scaled[np.abs(n) > 1e-3] / n[np.abs(n) > 1e-3]
        assert np.allclose(ratio, ratio[0], rtol=1e-5)  # only scaled, never reshaped


def test_mix_at_snr_rejects_silent_noise() -> None:
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.ones(100, np.float32), np.zeros(100, np.float32), 10.0)


# --- rooms --------------------------------------------------------------------------------------------------


def decaying_noise(rt60: float, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.random.default_rng(seed).standard_normal(len(t)) * 10 ** (-3 * t / rt60)


@pytest.mark.parametrize("rt60", [0.15, 0.4, 1.0])
def test_measured_rt60_of_a_known_decay(rt60: float) -> None:
    assert measured_rt60(decaying_noise(rt60, 1.5 * rt60)) == pytest.approx(rt60, rel=0.05)
    with pytest.raises(ValueError):
        measured_rt60(np.zeros(100))
    with pytest.raises(ValueError, match="25 dB"):
        measured_rt60(decaying_noise(rt60, 0.2 * rt60))


@pytest.mark.parametrize("rt60", [0.1, 0.2, 0.35, 0.5, 0.8])
def test_random_room_has_the_asked_rt60_for_both_kinds(rt60: float) -> None:
    kinds = set()
    for seed in range(8):
        rir, room = random_room(np.random.default_rng(seed), (rt60, rt60))
        kinds.add(room.kind)
        assert room.rt60 == rt60
        assert measured_rt60(rir) == pytest.approx(rt60, rel=0.1)  # the spec asks for 25%
    assert kinds == {"image", "exponential"}


def test_random_room_draws() -> None:
    rooms = [random_room(np.random.default_rng(seed)) for seed in range(40)]
    kinds = [room.kind for _, room in rooms]
    assert 10 <= kinds.count("image") <= 30
    for rir, room in rooms:
        assert rir.dtype == np.float32 and rir.ndim == 1 and np.all(np.isfinite(rir))
        assert rir[0] == 1.0  # the direct path, at sample 0
        assert 0.1 <= room.rt60 <= 0.8
        assert len(rir) == round(1.25 * room.rt60 * SR)
        assert room.drr_db == pytest.approx(10 * np.log10(1 / np.sum(rir[1:].astype(np.float64) ** 2)), abs=1e-3)
        if room.kind == "image":
            assert all(lo <= d <= hi for d, (lo, hi) in zip(room.room_dims, ROOM_SIZE))
            assert DISTANCE[0] <= room.distance <= DISTANCE[1]
        else:
            assert room.room_dims is None and room.distance is None
        meta = json.loads(json.dumps(room.to_json()))
        assert meta["kind"] == room.kind and meta["rt60"] == pytest.approx(room.rt60, abs=1e-4)
    assert len({room.rt60 for _, room in rooms}) == len(rooms)


def test_random_room_is_deterministic() -> None:
    a, room_a = random_room(np.random.default_rng(5))
    b, room_b = random_room(np.random.default_rng(5))
    assert a.tobytes() == b.tobytes() and room_a == room_b
    c, _ = random_room(np.random.default_rng(6))
    assert a.tobytes() != c.tobytes()


def test_image_method_reflections_arrive_at_their_geometric_delays() -> None:
    dims, source, mic = (6.0, 5.0, 3.0), np.array([2.0, 2.0, 1.5]), np.array([3.5, 2.6, 1.1])
    rir = image_method_rir(dims, source, mic, 0.8, np.random.default_rng(0))
    direct = np.linalg.norm(source - mic)
    beta = np.sqrt(1 - absorption(dims, 0.8))
    delays, amplitudes = [], []
    for axis in range(3):  # the six first-order images: mirrored in each wall
        for wall in (0.0, dims[axis]):
            image = source.copy()
            image[axis] = 2 * wall - source[axis]
            distance = np.linalg.norm(image - mic)
            delays.append((distance - direct) / SPEED_OF_SOUND * SR)
            amplitudes.append(beta * direct / distance)
    first = int(np.argmax(np.abs(rir[1:]) > 0.5 * amplitudes[int(np.argmin(delays))])) + 1
    assert abs(first - min(delays)) <= 1.5
    for delay, amplitude in zip(delays, amplitudes):
        near = np.abs(rir[int(delay) - 1:int(delay) + 3])
        assert near.max() > 0.5 * amplitude


def test_absorption() -> None:
    big, small = (10.0, 8.0, 4.0), (3.0, 3.0, 2.5)
    assert 0 < absorption(big, 0.1) < 1  # Sabine alone would ask for more than total absorption here
    assert absorption(small, 0.1) > absorption(small, 0.8)
    lx, ly, lz = small
    sabine = 0.161 * lx * ly * lz / (2 * (lx * ly + lx * lz + ly * lz) * 3.0)
    assert absorption(small, 3.0) == pytest.approx(sabine, rel=0.05)  # they agree for live rooms


def test_exponential_rir_direct_to_reverberant_ratio() -> None:
    for drr in (-3.0, 0.0, 10.0):
        rir = exponential_rir(0.4, np.random.default_rng(0), drr_db=drr).astype(np.float64)
        assert 10 * np.log10(1 / np.sum(rir[1:] ** 2)) == pytest.approx(drr, abs=0.01)


def test_reverberate_keeps_length_and_alignment() -> None:
    rng = np.random.default_rng(3)
    clicks = np.zeros(2 * SR, np.float32)
    clicks[np.sort(rng.choice(len(clicks), 12, replace=False))] = 1.0
    assert np.array_equal(reverberate(clicks, np.array([1.0], np.float32)), clicks)
    for seed in range(6):
        rir, _ = random_room(np.random.default_rng(seed))
        wet = reverberate(clicks, rir)
        assert wet.dtype == np.float32 and wet.shape == clicks.shape
        xcorr = signal.correlate(wet.astype(np.float64), clicks.astype(np.float64), mode="full", method="fft")
        assert np.argmax(xcorr) - (len(clicks) - 1) == 0
    assert reverberate(np.zeros(0, np.float32), rir).shape == (0,)


def test_room_to_json() -> None:
    room = Room(0.42424242, "image", (5.123456, 4.0, 3.0), 1.987654, 3.21)
    assert room.to_json() == {"rt60": 0.4242, "kind": "image", "room_dims": [5.1235, 4.0, 3.0],
                              "distance": 1.9877, "drr_db": 3.21}
    assert json.dumps(Room(0.3, "exponential").to_json(), sort_keys=True)
