"""The lip-feature stage: each FaceObservation's lips as pose- and scale-normalised features
(`pipelines.face.mesh.lip_features`)."""

from __future__ import annotations

from typing import Sequence

from ..face.mesh import lip_features
from ..frames import FaceObservation, Frame
from ..stage import Stage


class LipFeatureExtractor(Stage):
    """FaceObservation in; the observation (for stages further on) and its LipFeatures out."""

    accepts = (FaceObservation,)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self) -> None:
        super().__init__("lip_features")

    async def process(self, frame: Frame) -> Sequence[Frame]:
        return [frame, lip_features(frame)]  # microseconds of numpy: no worker thread needed
