"""Background noises for the corpus: each kind imitates one thing a call picks up besides the voices.

`make_noise(kind, n, rng)` draws a fresh noise of that kind: every kind draws its own parameters from
`rng`, so no two draws are alike, and the same generator state always gives the same samples. The result
is 16 kHz mono float32 at RMS `NOISE_RMS` (impulsive kinds peak well above 1: scale before writing).
`mix_at_snr` scales a noise against a signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import fft, signal

from ...pipelines.frames import SAMPLE_RATE

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "blue", "modulated", "hum", "clicks", "keyboard",
                                "music", "fan", "babble", "engine", "traffic", "clatter", "shaped")
NOISE_RMS = 0.1
BABBLE_VOICES = (3, 8)  # how many voices talk at once in babble, inclusive

# Spectral exponents: power ~ 1 / f**exponent, jittered by +-0.2 on each draw.
_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9)}


def make_noise(kind: str, n_samples: int, rng: np.random.Generator, voices: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`n_samples` of a fresh noise of `kind` (one of NOISE_KINDS), float32 at RMS NOISE_RMS.

    `voices` (clean 16 kHz utterances, at least 3) are needed by "babble" only.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if n_samples == 0 and kind != "babble":
        return np.zeros(0, np.float32)
    if kind == "babble":
        x = babble(n_samples, rng, voices)
    elif kind in _EXPONENTS:
        x = coloured(n_samples, rng, _EXPONENTS[kind] + rng.uniform(-0.2, 0.2))
    else:
        x = _MAKERS[kind](n_samples, rng)
    return _normalise(x)


def layer_second_kind(bed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """`bed` with a second kind (not babble) 0 to 12 dB under it, at RMS NOISE_RMS: real places sound of
    several things at once. Returns the layered noise and the second kind."""
    kinds = [k for k in NOISE_KINDS if k != "babble"]
    second = kinds[int(rng.integers(len(kinds)))]
    return _normalise(bed + make_noise(second, len(bed), rng) * 10 ** (rng.uniform(-12, 0) / 20)), second


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`noise` scaled so that 10*log10(sum(signal**2) / sum(scaled**2)) == snr_db (float32)."""
    noise64 = np.asarray(noise, np.float64)
    noise_energy = float(np.sum(noise64**2))
    if not noise_energy > 0:
        raise ValueError("mix_at_snr: the noise is silent, no gain gives the asked SNR")
    signal_energy = float(np.sum(np.asarray(signal, np.float64) ** 2))
    gain = np.sqrt(signal_energy / (noise_energy * 10.0 ** (snr_db / 10.0)))
    return (noise64 * gain).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, np.float64))
    rms = np.sqrt(np.mean(x**2)) if len(x) else 0.0
    if rms > 0:
        x = x * (NOISE_RMS / rms)
    return x.astype(np.float32)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _times(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _smooth_random(n: int, rng: np.random.Generator, rate_hz: float) -> np.ndarray:
    """A slowly wandering curve: unit-variance Gaussian points at `rate_hz`, linearly interpolated."""
    n_points = int(n / SAMPLE_RATE * rate_hz) + 2
    points = rng.standard_normal(n_points)
    return np.interp(np.arange(n) * rate_hz / SAMPLE_RATE, np.arange(n_points), points)


def coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power ~ 1 / f**exponent (white 0, pink 1, brown 2, blue -1) above 20 Hz."""
    m = fft.next_fast_len(max(n, 2), real=True)
    spectrum = fft.rfft(rng.standard_normal(m))
    freqs = np.maximum(np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE), 20.0)
    spectrum *= freqs ** (-exponent / 2.0)
    spectrum[0] = 0.0
    return fft.irfft(spectrum, m)[:n]


def modulated(n: int, rng: np.random.Generator) -> np.ndarray:
    """Non-stationary noise (traffic, wind, a crowd): coloured noise whose level wanders slowly, with bursts."""
    x = coloured(n, rng, rng.uniform(0.0, 1.5))
    depth = rng.uniform(0.4, 1.0)  # nepers: the level wanders with a spread of 3.5 to 9 dB
    envelope = np.exp(depth * _smooth_random(n, rng, rng.uniform(0.5, 3.0)))
    seconds = n / SAMPLE_RATE
    for _ in range(rng.poisson(rng.uniform(0.1, 0.5) * seconds)):
        length = int(rng.uniform(0.03, 0.4) * SAMPLE_RATE)
        start = int(rng.integers(-length // 2, max(n - length // 2, 1)))
        burst = 1.0 + rng.uniform(1.5, 5.0) * np.hanning(length)
        lo, hi = max(start, 0), min(start + length, n)
        envelope[lo:hi] *= burst[lo - start:hi - start]
    return x * envelope


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz (slightly off) with random weaker harmonics, over a faint hiss."""
    f0 = float(rng.choice([50.0, 60.0])) * (1.0 + rng.uniform(-0.002, 0.002))
    t = _times(n)
    x = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    for k in range(2, int(rng.integers(2, 13)) + 1):
        amplitude = rng.uniform(0.0, 0.7) * k ** -rng.uniform(0.3, 1.5)
        x += amplitude * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    hiss = _unit_rms(coloured(n, rng, rng.uniform(0.0, 1.0)))
    return x + hiss * 10 ** (-rng.uniform(25, 40) / 20) * np.sqrt(0.5)  # 25 to 40 dB under the fundamental


def clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sparse impulsive clicks (crackle, a loose cable, mouse clicks): short decaying bursts at a random rate."""
    x = np.zeros(n)
    count = max(1, rng.poisson(_log_uniform(rng, 1.0, 30.0) * n / SAMPLE_RATE))
    for start in np.sort(rng.integers(0, n, count)):
        length = int(rng.integers(16, 97))  # 1 to 6 ms
        shape = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
        end = min(start + length, n)
        x[start:end] += rng.choice([-1.0, 1.0]) * _log_uniform(rng, 0.3, 1.0) * shape[:end - start]
    return x


def _keystroke(rng: np.random.Generator) -> np.ndarray:
    """One key's sound: a noise burst through a random resonance, decaying in a few ms, then its release."""
    def burst(seconds: float, tau: float) -> np.ndarray:
        length = int(seconds * SAMPLE_RATE)
        return rng.standard_normal(length) * np.exp(-np.arange(length) / (tau * SAMPLE_RATE))

    centre = rng.uniform(1000, 5000)
    band = signal.butter(2, [centre / 1.6, min(centre * 1.6, 7800)], "bandpass", fs=SAMPLE_RATE, output="sos")
    thump = signal.butter(2, rng.uniform(150, 500), "lowpass", fs=SAMPLE_RATE, output="sos")
    press = signal.sosfilt(band, burst(0.03, rng.uniform(0.002, 0.008)))
    press += rng.uniform(0.5, 2.0) * signal.sosfilt(thump, burst(0.03, rng.uniform(0.004, 0.012)))
    release_at = int(rng.uniform(0.04, 0.12) * SAMPLE_RATE)
    sound = np.zeros(release_at + len(press))
    sound[:len(press)] += press
    sound[release_at:] += rng.uniform(0.2, 0.5) * signal.sosfilt(band, burst(0.03, rng.uniform(0.001, 0.004)))
    return sound / np.max(np.abs(sound))


def keyboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Typing: a few keys' sounds struck at an irregular rhythm, words of keys separated by pauses."""
    x = np.zeros(n)
    keys = [_keystroke(rng) for _ in range(int(rng.integers(3, 7)))]
    interval = rng.uniform(0.08, 0.25)  # mean seconds between keys within a word
    t = -rng.uniform(0.0, 1.0)
    while t * SAMPLE_RATE < n:
        for _ in range(int(rng.integers(1, 9))):  # one word
            start = int(t * SAMPLE_RATE)
            key = keys[int(rng.integers(len(keys)))] * rng.uniform(0.4, 1.0)
            lo, hi = max(start, 0), min(start + len(key), n)
            if lo < hi:
                x[lo:hi] += key[lo - start:hi - start]
            t += rng.gamma(6.0, interval / 6.0)
        t += rng.uniform(0.1, 1.5)  # a pause between words
    if not np.any(x):  # too short a draw for any key to land in it
        key = keys[0][:n]
        x[:len(key)] = key
    return x


def _wavetable(amplitudes: np.ndarray, phases: np.ndarray, size: int = 2048) -> np.ndarray:
    """One period of a harmonic tone, `size + 1` points (the last repeats the first)."""
    theta = np.arange(size + 1) / size
    k = np.arange(1, len(amplitudes) + 1)[:, None]
    return np.sum(amplitudes[:, None] * np.sin(2 * np.pi * k * theta + phases[:, None]), axis=0)


def _tone(freq: float, length: int, timbre: tuple[float, bool], rng: np.random.Generator) -> np.ndarray:
    """`length` samples of a harmonic note at `freq`; timbre = (harmonic roll-off, odd harmonics only)."""
    rolloff, odd_only = timbre
    k = np.arange(1, max(1, min(10, int(7600 / freq))) + 1)
    amplitudes = k.astype(float) ** -rolloff * ((k % 2 == 1) if odd_only else 1.0)
    table = _wavetable(amplitudes, rng.uniform(0, 2 * np.pi, len(k)))
    size = len(table) - 1
    position = (freq * _times(length) + rng.random()) % 1.0 * size
    index = position.astype(int)
    frac = position - index
    return table[index] * (1 - frac) + table[index + 1] * frac


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Music in the background: notes of a random scale and tempo, harmonic tones with plucked envelopes,
    some as chords."""
    x = np.zeros(n)
    scale = _SCALES[str(rng.choice(list(_SCALES)))]
    root = int(rng.integers(48, 67))  # MIDI note
    beat = 60.0 / rng.uniform(70, 160)
    timbre = (rng.uniform(0.8, 2.5), bool(rng.random() < 0.3))
    decay = rng.uniform(0.15, 1.2)  # seconds for the note to fall by 1/e
    chord_odds = rng.uniform(0.0, 0.6)
    t = -rng.uniform(0.0, 2 * beat)
    while t * SAMPLE_RATE < n:
        held = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        degree = int(rng.integers(0, 2 * len(scale)))
        degrees = [degree, degree + 2, degree + 4] if rng.random() < chord_odds else [degree]
        start, length = int(t * SAMPLE_RATE), int((held + 0.1) * SAMPLE_RATE)
        times = _times(length)
        attack = rng.uniform(0.003, 0.04)
        envelope = np.minimum(times / attack, 1.0) * np.exp(-times / decay)
        envelope *= np.clip((held + 0.1 - times) / 0.1, 0.0, 1.0)  # released over 100 ms after `held`
        envelope *= rng.uniform(0.5, 1.0) / np.sqrt(len(degrees))
        lo, hi = max(start, 0), min(start + length, n)
        for d in degrees:
            midi = root + 12 * (d // len(scale)) + scale[d % len(scale)]
            freq = 440.0 * 2 ** ((midi - 69) / 12)
            if lo < hi:
                x[lo:hi] += (_tone(freq, length, timbre, rng) * envelope)[lo - start:hi - start]
        t += held
    return x


def fan(n: int, rng: np.random.Generator) -> np.ndarray:
    """A fan or air conditioner: low-passed broadband noise with a resonance and a blade-pass tone,
    its level and pitch wobbling slowly."""
    t = _times(n)
    lowpass = signal.butter(int(rng.integers(1, 3)), rng.uniform(300, 2500), "lowpass", fs=SAMPLE_RATE,
                            output="sos")
    x = _unit_rms(signal.sosfilt(lowpass, rng.standard_normal(n)))
    centre = rng.uniform(150, 1500)
    q = rng.uniform(3, 10)
    resonance = signal.butter(1, [centre * (1 - 0.5 / q), centre * (1 + 0.5 / q)], "bandpass", fs=SAMPLE_RATE,
                              output="sos")
    x += 10 ** (rng.uniform(-10, 0) / 20) * _unit_rms(signal.sosfilt(resonance, rng.standard_normal(n)))
    wobble = np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t + rng.uniform(0, 2 * np.pi))
    blade = rng.uniform(30, 250) * (1 + rng.uniform(0.001, 0.01) * wobble)
    phase = 2 * np.pi * np.cumsum(blade) / SAMPLE_RATE
    tone_level = 10 ** (rng.uniform(-15, -3) / 20) * np.sqrt(2)
    for k in range(1, int(rng.integers(1, 4)) + 1):
        x += tone_level / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return x * (1 + rng.uniform(0.02, 0.15) * wobble)


def _looped(voice: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of `voice` said over and over with short pauses, starting at a random point."""
    unit = np.concatenate([voice, np.zeros(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE))])
    start = int(rng.integers(len(unit)))
    return np.tile(unit, (start + n) // len(unit) + 1)[start:start + n]


def babble(n: int, rng: np.random.Generator, voices: Sequence[np.ndarray]) -> np.ndarray:
    """A crowd talking: 3 to 8 distinct voices from `voices`, each looped from a random offset, +-6 dB."""
    if len(voices) < BABBLE_VOICES[0]:
        raise ValueError(f"babble needs at least {BABBLE_VOICES[0]} voices, got {len(voices)}")
    count = int(rng.integers(BABBLE_VOICES[0], min(BABBLE_VOICES[1], len(voices)) + 1))
    x = np.zeros(n)
    for i in rng.choice(len(voices), count, replace=False):
        voice = np.asarray(voices[i], np.float64)
        if voice.ndim != 1 or len(voice) == 0:
            raise ValueError(f"babble: voice {i} must be a non-empty 1-D array, got shape {voice.shape}")
        rms = np.sqrt(np.mean(voice**2))
        gain = 10 ** (rng.uniform(-6, 6) / 20) / rms if rms > 0 else 0.0
        x += gain * _looped(voice, n, rng)
    return x


def engine(n: int, rng: np.random.Generator) -> np.ndarray:
    """A car or bus from inside: low rumble (brown noise low-passed at 100-600 Hz) under the engine's firing
    harmonics (20-90 Hz, the revs drifting), with road hiss well below."""
    rumble = _unit_rms(signal.sosfilt(signal.butter(2, rng.uniform(100, 600), "lowpass", fs=SAMPLE_RATE, output="sos"),
                                      coloured(n, rng, rng.uniform(1.5, 2.5))))
    revs = rng.uniform(20, 90) * (1 + rng.uniform(0.01, 0.08) * _smooth_random(n, rng, rng.uniform(0.1, 0.5)))
    phase = 2 * np.pi * np.cumsum(revs) / SAMPLE_RATE
    tones = sum(k ** -rng.uniform(0.5, 1.5) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
                for k in range(1, int(rng.integers(2, 8)) + 1))
    hiss = _unit_rms(coloured(n, rng, rng.uniform(0.5, 1.5)))
    return rumble + 10 ** (rng.uniform(-12, 0) / 20) * _unit_rms(tones) + 10 ** (rng.uniform(-25, -10) / 20) * hiss


def traffic(n: int, rng: np.random.Generator) -> np.ndarray:
    """A street: low-passed noise swelling and fading as vehicles pass (one every 1-6 s, 2-8 s each)."""
    bed = _unit_rms(signal.sosfilt(signal.butter(1, rng.uniform(400, 3000), "lowpass", fs=SAMPLE_RATE, output="sos"),
                                   coloured(n, rng, rng.uniform(0.5, 2.0))))
    envelope = np.full(n, 10 ** (rng.uniform(-20, -6) / 20))
    t = _times(n)
    for _ in range(rng.poisson(n / SAMPLE_RATE / rng.uniform(1, 6)) + 1):
        centre, width = rng.uniform(-2, n / SAMPLE_RATE + 2), rng.uniform(1, 4)
        envelope += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((t - centre) / (width / 2)) ** 2)
    return bed * envelope


def clatter(n: int, rng: np.random.Generator) -> np.ndarray:
    """Dishes, cutlery, a kitchen: hard impacts ringing at a few high partials (0.8-7 kHz, 10-250 ms decays),
    1-8 a second, over running water (band-passed noise)."""
    x = np.zeros(n)
    for _ in range(rng.poisson(n / SAMPLE_RATE * rng.uniform(1, 8))):
        length = int(0.4 * SAMPLE_RATE)
        t = np.arange(length) / SAMPLE_RATE
        ring = sum(rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * _log_uniform(rng, 800, 7000) * t + rng.uniform(0, 6.3))
                   * np.exp(-t / _log_uniform(rng, 0.01, 0.25)) for _ in range(int(rng.integers(2, 7))))
        start = int(rng.integers(0, max(n, 1)))
        end = min(start + length, n)
        x[start:end] += _log_uniform(rng, 0.2, 3.0) * ring[:end - start]
    water = signal.sosfilt(signal.butter(2, [rng.uniform(300, 1000), rng.uniform(2000, 6000)], "bandpass",
                                         fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    return x + 10 ** (rng.uniform(-30, -5) / 20) * _unit_rms(water) * max(float(np.sqrt(np.mean(x**2))), 1e-3)


def shaped(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise of any colour: white noise through a random smooth spectral envelope (+-15 dB at 12 log-spaced
    points, 50 Hz to 8 kHz), its level wandering: covers the spectra the named kinds do not."""
    m = fft.next_fast_len(max(n, 2), real=True)
    freqs = np.maximum(np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE), 50.0)
    points = np.linspace(np.log(50.0), np.log(8000.0), 12)
    gains_db = np.interp(np.log(freqs), points, rng.uniform(-15, 15, len(points)))
    x = fft.irfft(fft.rfft(rng.standard_normal(m)) * 10 ** (gains_db / 20), m)[:n]
    return x * np.exp(rng.uniform(0.0, 0.7) * _smooth_random(n, rng, rng.uniform(0.2, 2.0)))


_MAKERS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "modulated": modulated, "hum": hum, "clicks": clicks, "keyboard": keyboard, "music": music, "fan": fan,
    "engine": engine, "traffic": traffic, "clatter": clatter, "shaped": shaped,
}
