"""What ships on this machine, by feature: the one answer to "can a call have X here".

A feature ships when every weight file it needs is in the weights folder, or, for a packaged model (the
noise suppressors DTLN, DeepFilterNet3, RNNoise), when its pinned distribution is installed with all its
files (`runtime.shipped`; the sha256 are checked when the weights load, not here).
"""

from __future__ import annotations

from .nets.emotion import FACE as EMOTION_FACE, VOICE as EMOTION_VOICE
from .nets.lip_gate_net import WEIGHTS as LIP_GATE_NET
from .nets.sync_judge import AUDIO_WEIGHTS as SYNC_AUDIO, LIPS_WEIGHTS as SYNC_LIPS
from .nets.voice_to_lips import WEIGHTS as TALKING_FACE
from .runtime import shipped
from .suppressors import BACKENDS, DEFAULT

# feature -> the weights (our files, or packaged models by their manifest name) it needs
FEATURES: dict[str, tuple[str, ...]] = {
    "emotion": (EMOTION_FACE, EMOTION_VOICE),  # the emotion reader: face and voice nets
    "sync_judge": (SYNC_LIPS, SYNC_AUDIO),  # the active speaker and the sync monitor
    "talking_face": (TALKING_FACE,),
    "lip_gate_net": (LIP_GATE_NET,),  # the lip gate's net (without it: the logistic design)
    **{name: (entry,) for name, (_, entry) in BACKENDS.items()},  # each noise suppressor, by its --enhance name
}


def available(feature: str) -> bool:
    """Whether `feature` (a key of FEATURES: "emotion", "talking_face", "dtln", ...) ships here."""
    if feature not in FEATURES:
        raise KeyError(f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")
    return all(shipped(name) for name in FEATURES[feature])


def enhancers() -> list[str]:
    """The noise suppressors that ship here, in the order users are offered them (the default first)."""
    return [name for name in BACKENDS if available(name)]


def default_enhancer() -> str:
    """What a call runs unless told otherwise: the default noise suppressor where it ships, else "off"."""
    return DEFAULT if available(DEFAULT) else "off"
