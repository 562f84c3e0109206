"""Bad input: a clear one-line error, a non-zero exit, no traceback and nothing half-written."""

from __future__ import annotations

import re

import av
import pytest

from tests.conftest import run_cli, write_media


def make_truncated(tmp_path):
    whole = write_media(tmp_path / "whole.mp4", seconds=4.0, size=(160, 120))
    data = whole.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return tmp_path / "truncated.mp4"


def make_truncated_faststart(tmp_path):
    """moov at the front (as streaming sites write mp4): the header survives, the media does not."""
    whole = write_media(tmp_path / "whole.mp4", seconds=4.0, size=(160, 120))
    faststart = tmp_path / "faststart.mp4"
    with av.open(str(whole)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = faststart.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    return tmp_path / "cut.mp4"


def make_text(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my meeting notes, not a video\n" * 20)
    return path


def make_empty(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def make_zero_seconds(tmp_path):
    return write_media(tmp_path / "zero.mkv", seconds=0.0, size=(64, 48), audio_codec=None)


def make_tiny(tmp_path):
    return write_media(tmp_path / "tiny.mov", seconds=0.4, size=(1, 1), video_codec="png", audio_codec=None)


def make_8k(tmp_path):
    return write_media(tmp_path / "8k.mp4", seconds=0.04, size=(7680, 4320), audio_codec=None)


BAD = {
    "missing": (lambda p: p / "nowhere.mp4", "no such file"),
    "text renamed .mp4": (make_text, "not a media file"),
    "empty": (make_empty, "empty file"),
    "truncated mp4": (make_truncated, "damaged"),
    "truncated faststart mp4": (make_truncated_faststart, "truncated"),
    "0-second file": (make_zero_seconds, "0 s|no audio or video"),
    "1x1 video": (make_tiny, "too small"),
    "8K video": (make_8k, "larger than avcall processes"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line(tmp_path, case):
    make, expected = BAD[case]
    path = make(tmp_path)
    out = tmp_path / "out" / "call"
    result = run_cli("process", str(path), "-o", str(out), "-q")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avcall: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()  # nothing created, not even an empty folder


def test_bad_input_leaves_an_existing_output_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("mine")
    result = run_cli("process", str(make_text(tmp_path)), "-o", str(out), "-q")
    assert result.returncode == 2
    assert [p.name for p in out.iterdir()] == ["kept.txt"]


def test_audio_only_file_is_processed_no_face_is_normal(tmp_path):
    path = write_media(tmp_path / "voice.m4a", seconds=1.5, size=None)
    result = run_cli("process", str(path), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    assert "no video" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["annotated.mp4", "lips.npz", "telemetry.json"]


def test_unwritable_output_is_a_clear_error(tmp_path):
    clip = write_media(tmp_path / "clip.mp4", seconds=0.5)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    result = run_cli("process", str(clip), "-o", str(blocker / "out"), "-q")
    assert result.returncode == 2 and result.stderr.startswith("avcall: error: cannot write to"), result.stderr


def test_nothing_to_process_is_a_clear_error(tmp_path):
    result = run_cli("process", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "give an INPUT file" in result.stderr


def test_a_file_cut_short_is_processed_with_a_warning(shared_data, tmp_path):
    """The first 10 KB of a GRID .mpg: the container declares only what is left, so only the decoder can tell."""
    whole = shared_data / "talking_faces" / "GRID_lbax4n.mpg"
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(whole.read_bytes()[:10_240])
    result = run_cli("process", str(cut), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("avcall: warning: ")]
    assert len(warnings) == 1, result.stderr
    assert re.search(r"ends early or is damaged .*processed up to 0\.\d\d s", warnings[0]), warnings[0]
    result = run_cli("process", str(whole), "-o", str(tmp_path / "whole"), "-q")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
