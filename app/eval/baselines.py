"""The enhancement methods `avcall eval enhance` compares (the captions evaluation's enhanced path and the demo's
report use them too). They go through one small interface (`Method`) and one registry (`METHODS`,
`register_method`): `noisy` (the input as is), `noisereduce`, every noise suppressor of pipelines/suppressors by
its name (`dtln`, `dfn3`, `rnnoise`, `avcall-ao`), `avcall` (what a call with a camera runs: the default
suppressor, the lip gate and the limiter), `avcall-nogate` (the same without the gate: what `--enhance` runs
without a camera), the gate's baselines (`avcall-vad-gate`: opened by voice activity alone; `avcall-other-lips`:
another clip's lips), and the lip-guided models under evaluation (`avcall-av`, `avdcnn`, the target-talker
extractors) when their weights are there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from avcall.pipelines.errors import InputError
from avcall.pipelines.suppressors import DEFAULT as DEFAULT_BACKEND

from .data import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np
    from avcall.pipelines.face.lip_track import LipTrack


@runtime_checkable
class Method(Protocol):
    """An enhancer under evaluation. `enhance` gets 16 kHz mono float32 and returns as many samples,
    aligned in time with the input (the method compensates its own delay). `lips` is the target's lip track
    at the video's frame rate (frame i is at i / lips.fps - audio_offset seconds of audio time), or None
    where there is no video (the `pair` condition) or when `needs_lips` is False."""

    name: str
    needs_lips: bool

    def enhance(self, audio: np.ndarray, lips: LipTrack | None, audio_offset: float) -> np.ndarray: ...


METHODS: dict[str, Callable[[], Method]] = {}


class MethodUnavailable(Exception):
    """A factory's way to say its method cannot run here (no trained weights yet, ...): the default set
    leaves it out with a note; asked for by name, it is a one-line error."""


def register_method(name: str, factory: Callable[[], Method]) -> None:
    """Make `name` available to `avcall eval enhance --methods`. `factory()` builds the method (import heavy
    packages inside it); it may raise ImportError when the method's packages are missing, or
    MethodUnavailable, and the method is then left out of the default set."""
    METHODS[name] = factory


class Identity:
    """The noisy input as is: the baseline every improvement is measured from."""

    name = "noisy"
    needs_lips = False

    def enhance(self, audio, lips, audio_offset):
        return audio.copy()


class NoiseReduce:
    """noisereduce's spectral gating, non-stationary mode, default settings, at 16 kHz."""

    name = "noisereduce"
    needs_lips = False

    def __init__(self):
        import noisereduce

        self._reduce = noisereduce.reduce_noise

    def enhance(self, audio, lips, audio_offset):
        import numpy as np

        out = self._reduce(y=audio, sr=SAMPLE_RATE, stationary=False)
        return np.asarray(out, np.float32)[:len(audio)]


class SuppressorMethod:
    """A noise suppressor of pipelines/suppressors through its streaming interface (the clip path is the hop
    path in a loop, its delay taken off). `limit`: the limiter after it, as the SpeechEnhancer stage runs it."""

    needs_lips = False

    def __init__(self, name: str, backend: str, limit: bool = False) -> None:
        from avcall.pipelines.suppressors import open_suppressor

        try:
            self.suppressor = open_suppressor(backend)
        except InputError as err:
            raise MethodUnavailable(str(err)) from None
        self.name, self.limit = name, limit

    def enhance(self, audio, lips, audio_offset):
        from avcall.pipelines.audio import Limiter

        out = self.suppressor.enhance_clip(audio)
        return Limiter()(out) if self.limit else out


class AvcallEnhancer:
    """The shipped ONNX enhancers through the same streaming code the live stage runs (one hop at a time)."""

    def __init__(self, name: str, av: str | None, ao: str | None, use_lips: bool = True) -> None:
        from avcall.pipelines.runtime import weights_path
        from avcall.pipelines.nets.enhancer import StreamingEnhancer

        paths = [weights_path(f) if f else None for f in (av, ao)]
        missing = [str(p) for p in paths if p is not None and not p.is_file()]
        if missing:
            raise MethodUnavailable(f"{name}: no trained weights ({', '.join(missing)})")
        self.name, self.needs_lips, self.use_lips = name, use_lips and av is not None, use_lips
        self.enhancer = StreamingEnhancer(*paths)

    def enhance(self, audio, lips, audio_offset):
        return self.enhancer.enhance_clip(audio, lips if self.use_lips else None, audio_offset)


class GatedChain:
    """A suppressor, then the lip gate (pipelines/lip_gate.py), then the limiter: what a call with a camera runs
    (`avcall`: the default suppressor). `gate`: "lips" (the face's lips and the voice decide, through the net),
    "lips-logistic" (the same through the gate's first design: the logistic scorer and the sync judge), "vad" (the
    baseline: an audio-only voice-activity decision opens it: it hears speech, not whose) or "other-lips" (the
    lips of another clip: the evaluator gives them, and the gate must fail with them). Without lips (no video)
    the gate is open. `gains` holds the last clip's gains, for the evaluation's turn figures."""

    needs_lips = True

    def __init__(self, name: str, backend: str = DEFAULT_BACKEND, gate: str = "lips") -> None:
        from avcall.pipelines.features import available
        from avcall.pipelines.nets.sync_judge import SyncJudge

        self.name, self.gate = name, gate
        self.base = SuppressorMethod(backend, backend)
        self.suppressor = self.base.suppressor
        # the judge only for the logistic scorer (as the stage: without its weights, none)
        judged = gate == "lips-logistic" and available("sync_judge")
        self.judge = SyncJudge() if judged else None
        self.lips_from_other_clip = gate == "other-lips"
        self.gains = None

    def enhance(self, audio, lips, audio_offset):
        from avcall.pipelines.audio import Limiter
        from avcall.pipelines.lip_gate import GateScorer, gate_clip

        out = self.base.enhance(audio, None, audio_offset)
        if self.gate == "vad":
            self.gains = gate_clip(audio, [], delay=self.suppressor.delay, audio_only=True)
        elif lips is not None:
            scorer = GateScorer() if self.gate == "lips-logistic" else None
            self.gains = gate_clip(audio, lips.frames(audio_offset), delay=self.suppressor.delay, judge=self.judge,
                                   scorer=scorer)
        else:
            self.gains = None
        return Limiter()(out if self.gains is None else out * self.gains)


register_method("noisy", Identity)
register_method("noisereduce", NoiseReduce)
register_method("avcall", lambda: GatedChain("avcall"))  # what a call with a camera runs: DTLN, the gate, the limiter
register_method("avcall-nogate", lambda: SuppressorMethod("avcall-nogate", DEFAULT_BACKEND, limit=True))
register_method("avcall-gate-logistic", lambda: GatedChain("avcall-gate-logistic", gate="lips-logistic"))
register_method("avcall-vad-gate", lambda: GatedChain("avcall-vad-gate", gate="vad"))
register_method("avcall-other-lips", lambda: GatedChain("avcall-other-lips", gate="other-lips"))
for _backend in ("dtln", "dfn3", "rnnoise", "avcall-ao"):
    register_method(_backend, lambda b=_backend: SuppressorMethod(b, b))
register_method("avcall-av", lambda: AvcallEnhancer("avcall-av", "avse_av.onnx", "avse_ao.onnx"))
# the AV network alone with the face removed for the whole clip: what it does without lips
register_method("avcall-av-noface", lambda: AvcallEnhancer("avcall-av-noface", "avse_av.onnx", None, use_lips=False))
register_method("avdcnn", lambda: AvcallEnhancer("avdcnn", "avse_avdcnn.onnx", None))


class TargetTalkerMethod:
    """The shipped chain (`avcall`: the suppressor and the limiter) followed by the lip-guided target-talker
    extractor (pipelines/target_talker.py, issue 22) through its streaming path. `design`: `separate` (a
    two-speaker separator, the sync judge selects the face's stream) or `lips` (the separator conditioned on the
    judge's lip embedding). `use_lips=False`: the same with the lip stream zeroed (the face still there), so the
    difference is what the lips bring. Weights: $AVCALL_TSE_WEIGHTS (a folder) if set, else models/weights/."""

    needs_lips = True

    def __init__(self, name: str, design: str, use_lips: bool = True) -> None:
        from avcall.pipelines.runtime import weights_path
        from avcall.pipelines.target_talker import SEPARATOR, TargetTalker

        folder = os.environ.get("AVCALL_TSE_WEIGHTS")
        path = Path(folder) / SEPARATOR[design] if folder else weights_path(SEPARATOR[design])
        if not path.is_file():
            raise MethodUnavailable(f"{name}: no trained weights ({path})")
        self.name = name
        self.chain = SuppressorMethod("avcall", DEFAULT_BACKEND, limit=True)
        self.extractor = TargetTalker(design, path, use_lips=use_lips)

    def enhance(self, audio, lips, audio_offset):
        return self.extractor.extract_clip(self.chain.enhance(audio, None, audio_offset), lips, audio_offset)


register_method("avcall-tse", lambda: TargetTalkerMethod("avcall-tse", "separate"))
register_method("avcall-tse-nolips", lambda: TargetTalkerMethod("avcall-tse-nolips", "separate", use_lips=False))
register_method("avcall-tse2", lambda: TargetTalkerMethod("avcall-tse2", "lips"))
register_method("avcall-tse2-nolips", lambda: TargetTalkerMethod("avcall-tse2-nolips", "lips", use_lips=False))


def build_methods(names: list[str] | None) -> tuple[list[Method], list[str]]:
    """The methods asked for (all registered ones whose packages import, when `names` is None), and notes
    on those left out."""
    notes = []
    if names is not None:
        unknown = [n for n in names if n not in METHODS]
        if unknown:
            raise InputError(f"--methods: unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    methods = []
    for name in (names if names is not None else list(METHODS)):
        try:
            methods.append(METHODS[name]())
        except ImportError as err:
            if names is not None:
                raise InputError(f"method {name} needs a package that is not installed ({err.name or err}); "
                                 "pip install 'avcall[eval]'") from None
            notes.append(f"{name} left out: {err}")
        except MethodUnavailable as err:
            if names is not None:
                raise InputError(f"method {name} cannot run here: {err}") from None
            notes.append(f"{name} left out: {err}")
    if not methods:
        raise InputError("no method to evaluate")
    return methods, notes
