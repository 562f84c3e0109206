"""`avcall bench cluster --calls N[,N...]`: room calls through Janus and Ray workers on this machine, measured
from the participants' side.

For each count: a local Janus and a Ray head (app/cluster.start_ray, one slot per call plus the warm spare),
the controller, and N scripted participants (app/participant.Participant) that publish a rendered talking
clip into the room and follow the feed their worker publishes. After a warm-up, for `seconds`:
- held at real time: the processed voice each participant receives per second of wall clock (1.0 = all of
  it), the share of it the enhancer had to pass through unprocessed (it was late), the worker's own audio
  delay and its other incidents (frames dropped, work shed); a call is held when at least 97% of the voice
  comes back, at most 5% of it unprocessed, with the worker's delay under 300 ms;
- the CPU each worker process (with its recogniser's process) spends per second, and Janus', Ray's and this
  process's (the participants' media, the controller): what a call costs, whatever else shares the machine;
- the added delay through the SFU: the lag of the processed voice's 10 ms energy envelope, as received, behind
  the envelope of the voice the participant sent (both on this machine's clock): participant -> Janus ->
  worker -> Janus -> participant, the worker's own processing included (its share, from its telemetry, is
  given beside it); and, beside it, the same voice as Janus relays it straight back to the participant
  (its own feed, no worker): what the SFU alone adds;
then one worker's process is killed (SIGKILL) and the failover timed: Ray's report of the death, the next
worker's feed in the room, the first processed audio and the first caption back at the participant.
The participants' own encoding and decoding run on the same machine's cores: on a 2-core machine they take
part of what the workers would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avcall.pipelines.errors import InputError

LINES = ("please call me back tomorrow morning", "the weather will be fine on the coast this week")
WARMUP_S = 8.0
FAILOVER_WAIT_S = 20.0


def _clip(folder: Path, seconds: float) -> Path:
    """The bundled portrait saying LINES, looped to last `seconds` (aiortc's player loops video, not audio)."""
    from avcall.models.data.portrait import write_talking_portrait

    one, clip = folder / "one.mp4", folder / "talk.mp4"
    if not write_talking_portrait(one, list(LINES)):
        raise InputError("no text-to-speech voice for the bench's clip (scripts/setup.sh installs flite)")
    loops = max(1, int(seconds / 6) + 2)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", str(loops), "-i", str(one), "-c", "copy",
                    str(clip)], check=True, timeout=120)
    return clip


def _envelope(blocks: list[tuple[float, np.ndarray]], start: float, end: float) -> dict[int, float]:
    """10 ms log energy (dB) keyed by the 10 ms slot of its time on the monotonic clock."""
    out = {}
    for t, x in blocks:
        if not start <= t <= end:
            continue
        hop = 480
        for j in range(len(x) // hop):
            part = x[j * hop:(j + 1) * hop]
            out[int(round((t + j * 0.01) / 0.01))] = float(10 * np.log10(np.mean(part.astype(np.float64) ** 2) + 1e-10))
    return out


def envelope_lag_ms(sent: list, received: list, start: float, end: float, max_lag_s: float = 1.5) -> dict:
    """The lag (ms) at which the received voice's envelope best matches the sent one's, and that match's r."""
    a, b = _envelope(sent, start, end), _envelope(received, start, end + max_lag_s)
    if len(a) < 100 or len(b) < 100:
        return {"lag_ms": None, "r": None}
    floor_a, floor_b = max(a.values()) - 40, max(b.values()) - 40
    best = (-2.0, None)
    for lag in range(0, int(max_lag_s * 100)):
        keys = [k for k in a if k + lag in b]
        if len(keys) < 100:
            continue
        x = np.maximum([a[k] for k in keys], floor_a)
        y = np.maximum([b[k + lag] for k in keys], floor_b)
        if x.std() > 0 and y.std() > 0:
            r = float(np.corrcoef(x, y)[0, 1])
            if r > best[0]:
                best = (r, lag)
    return {"lag_ms": None if best[1] is None else best[1] * 10, "r": round(best[0], 3)}


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 3) if values else None


async def _one_count(calls: int, seconds: float, janus: str, clip: Path, room: int,
                     janus_pid: int | None = None, calls_per_worker: int = 1, captions: bool = True) -> dict:
    from avcall.app.cluster import ClusterConfig, Controller
    from avcall.app.participant import Participant

    from avcall.app.janus import ensure_room

    await ensure_room(janus, room)
    cfg = ClusterConfig(janus=janus, room=room, workers=calls, calls_per_worker=calls_per_worker, captions=captions)
    controller = Controller(cfg)
    stop = asyncio.Event()
    control = asyncio.ensure_future(controller.run(stop))
    people = [Participant(janus, room, clip, display=f"bench-{i}") for i in range(calls)]
    try:
        for person in people:
            await person.start()
            await person.watch_own_feed()  # the same voice through Janus alone: the SFU's share of the delay
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(p.received.audio for p in people):
            await asyncio.sleep(0.5)
        if not all(p.received.audio for p in people):
            raise InputError(f"not every participant got a processed feed within 120 s: {controller.status()}")
        await asyncio.sleep(WARMUP_S)
        start, wall_start = time.monotonic(), time.time()
        counts = [len(p.received.audio) for p in people]
        cpu0 = _cpu_seconds()
        # each call's worker process (and its recogniser's); with K > 1 calls share a process and its CPU
        workers = {feed: [a.worker_pid, *_children(a.worker_pid)] for feed, a in controller.calls.items()}
        groups = {"janus": [janus_pid] if janus_pid else [], "ray": _named("raylet", "gcs_server"),
                  "bench_process": [os.getpid()]}  # the participants' media and the controller
        spent0 = {k: sum(map(_proc_cpu, v)) for k, v in {**workers, **groups}.items()}
        parts0 = await _worker_parts(controller)
        await asyncio.sleep(seconds)
        end, wall_end = time.monotonic(), time.time()
        parts1 = await _worker_parts(controller)
        cpu = (_cpu_seconds() - cpu0) / (end - start)
        sharing = {feed: sum(1 for other in workers.values() if other[0] == v[0]) for feed, v in workers.items()}
        spent = {k: round((sum(map(_proc_cpu, v)) - spent0[k]) / (end - start) / sharing.get(k, 1), 3)
                 for k, v in {**workers, **groups}.items()}  # a shared worker process: its share per call
        per_call, restarted_pids = [], set()
        for person, n0 in zip(people, counts):
            got = sum(len(x) for _, x in person.received.audio[n0:]) / 48_000
            telemetry = [m for t, m in person.received.messages if start <= t <= end and m.get("type") == "telemetry"]
            last = telemetry[-1] if telemetry else {}
            first = telemetry[0].get("incidents", {}) if telemetry else {}
            incidents = {k: v - first.get(k, 0) for k, v in last.get("incidents", {}).items() if v - first.get(k, 0)}
            lag = envelope_lag_ms(person.sent_audio, person.received.audio, start, end)
            sfu = envelope_lag_ms(person.sent_audio, person.received.own_audio, start, end)
            unprocessed = incidents.get("audio_passthrough_samples", 0) / 16_000 / (end - start)
            pid = workers.get(person.id, [None])[0]
            # a call that was started again within the window (its worker died or let it go, overloaded): its
            # counters began again, its process may be another; its figures are not the window's
            now = controller.calls.get(person.id)
            if restarted_in(start, end, person.received.feeds, pid, now.worker_pid if now else pid, first,
                            last.get("incidents", {})):
                per_call.append({"restarted_in_window": True, "audio_received_per_s": round(got / (end - start), 3),
                                 "captions": len(person.received.captions(start))})
                restarted_pids.add(pid)
                continue
            per_call.append({"restarted_in_window": False, "pid": pid, "worker_cores": spent.get(person.id),
                             "worker_cores_by_part": _rates(parts0.get(pid), parts1.get(pid), end - start,
                                                            sharing.get(person.id, 1)),
                             "audio_received_per_s": round(got / (end - start), 3),
                             "voice_unprocessed_share": round(unprocessed, 3),
                             "voice_delay_ms": lag["lag_ms"], "envelope_r": lag["r"],
                             "sfu_only_delay_ms": sfu["lag_ms"], "sfu_only_envelope_r": sfu["r"],
                             "worker_audio_delay_ms": last.get("audio_delay_ms"),
                             "worker_receive_buffer_ms": last.get("receive_buffer_ms"),
                             "face_tracked": last.get("face"),
                             "captions": len(person.received.captions(start)),
                             "incidents_in_window": incidents, "stage_failures": last.get("failures") or []})
        for c in per_call:  # a process whose threads of a restarted call ended: its CPU by part went back too
            if c.pop("pid", None) in restarted_pids:
                c.update(worker_cores=None, worker_cores_by_part=None, process_shared_with_a_restarted_call=True)
        failover = await _failover(controller, people[0])
        return {"calls": calls, "calls_per_worker": calls_per_worker,
                "worker_processes": len({a.worker_pid for a in controller.calls.values()}),
                "seconds": round(end - start, 1), "machine_cpu_cores_busy": round(cpu, 2),
                "cores": {"worker_per_call_median": _median([c.get("worker_cores") for c in per_call]),
                          **{k: spent[k] for k in groups}},
                "worker_cores_by_part_median": _part_medians([c.get("worker_cores_by_part") for c in per_call]),
                "per_call": per_call,
                "held_at_real_time": all(not c["restarted_in_window"] and c["audio_received_per_s"] >= 0.97
                                         and c["voice_unprocessed_share"] <= 0.05
                                         and (c["worker_audio_delay_ms"] or 0) < 300 for c in per_call),
                "calls_restarted_in_window": sum(c["restarted_in_window"] for c in per_call),
                # why: the calls that ended in the window (the reason each gave) and the workers Ray found dead
                "calls_ended_in_window": [e["ended"] for e in controller.ended if wall_start <= e["at"] <= wall_end],
                "workers_dead_in_window": [f.dead_pid for f in controller.failovers
                                           if wall_start <= f.detected_at <= wall_end],
                "voice_delay_ms_median": _median([c.get("voice_delay_ms") for c in per_call]),
                "sfu_only_delay_ms_median": _median([c.get("sfu_only_delay_ms") for c in per_call]),
                "worker_audio_delay_ms_median": _median([c.get("worker_audio_delay_ms") for c in per_call]),
                # the voice's way, leg by leg (medians): Janus both ways (its own relay's round trip, which also
                # holds the participant's encoding and jitter buffer, there on both paths), the worker's jitter
                # buffer, the worker from the voice's arrival to its encoder, and what is left (decoding, the
                # worker's encoder and sending, the second pass through Janus)
                "voice_delay_legs_ms": _legs(per_call),
                "failover": failover}
    finally:
        for person in people:
            await person.stop()
        stop.set()
        await asyncio.gather(control, return_exceptions=True)


def restarted_in(start: float, end: float, feeds: list[tuple[float, int]], pid_before: int | None,
                 pid_after: int | None, counts_before: dict, counts_after: dict) -> bool:
    """Whether a call was started again between `start` and `end`: its participant subscribed to a new worker
    feed, its worker process is another, or its counters went back."""
    return (any(start < t <= end for t, _ in feeds) or pid_after != pid_before
            or any(v < counts_before.get(k, 0) for k, v in counts_after.items()))


async def _worker_parts(controller) -> dict[int, dict]:
    """Each worker process's CPU seconds so far by part of its calls (its own report), by pid."""
    await controller.refresh()
    return {w.info.get("pid"): w.info.get("cpu_parts_s") or {} for w in controller.pool}


def _rates(before: dict | None, after: dict | None, seconds: float, calls: int) -> dict | None:
    """Cores spent on each part over the window, per call (a process's calls share its parts alike)."""
    if before is None or after is None:
        return None
    rates = {part: round((after[part] - before.get(part, 0.0)) / seconds / calls, 3) for part in after}
    return dict(sorted(rates.items(), key=lambda kv: -kv[1]))


def _legs(per_call: list[dict]) -> dict:
    total = _median([c.get("voice_delay_ms") for c in per_call])
    sfu = _median([c.get("sfu_only_delay_ms") for c in per_call])
    buffer = _median([c.get("worker_receive_buffer_ms") for c in per_call])
    worker = _median([c.get("worker_audio_delay_ms") for c in per_call])
    known = [sfu, buffer, worker]
    rest = round(total - sum(known), 1) if total is not None and None not in known else None
    # below zero the legs disagree: a voice seconds behind (overloaded) lies past the envelope's lag search
    return {"participant_janus_participant": sfu, "worker_receive_buffer": buffer, "worker_arrival_to_encoder": worker,
            "rest": rest if rest is None or rest >= 0 else None,
            "added_by_the_worker": round(total - sfu, 1) if total is not None and sfu is not None else None}


def _part_medians(rows: list[dict | None]) -> dict:
    parts = {part for row in rows if row for part in row}
    medians = {part: _median([row.get(part, 0.0) for row in rows if row]) for part in parts}
    return dict(sorted(medians.items(), key=lambda kv: -(kv[1] or 0)))


async def _failover(controller, person) -> dict:
    """Kills the worker of `person`'s call and times what follows."""
    call = controller.calls.get(person.id)
    if call is None:
        return {"error": "no call to fail over"}
    killed_wall, killed = time.time(), time.monotonic()
    os.kill(call.worker_pid, signal.SIGKILL)
    feeds_before = len(person.received.feeds)
    deadline = killed + FAILOVER_WAIT_S
    audio_back = caption_back = None
    while time.monotonic() < deadline and (audio_back is None or caption_back is None):
        await asyncio.sleep(0.05)
        if len(person.received.feeds) > feeds_before:  # only what came on the next worker's feed counts (the
            subscribed = person.received.feeds[-1][0]  # dead one's last messages can arrive after the kill)
            later = [t for t, _ in person.received.audio if t > subscribed]
            audio_back = audio_back or (later[0] if later else None)
            captions = [t for t, m in person.received.messages if t > subscribed and m.get("type") == "caption"
                        and m.get("kind") == "final"]
            caption_back = caption_back or (captions[0] if captions else None)
    record = next((f for f in controller.failovers if f.dead_pid == call.worker_pid), None)
    return {"ray_reported_death_s": round(record.detected_at - killed_wall, 3) if record else None,
            "next_feed_published_s": round(record.republished_at - killed_wall, 3)
            if record and record.republished_at else None,
            "processed_audio_back_s": round(audio_back - killed, 3) if audio_back else None,
            "first_caption_back_s": round(caption_back - killed, 3) if caption_back else None}


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has spent so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a worker's recogniser, started with multiprocessing's spawn)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _named(*names: str) -> list[int]:
    """Processes by their command name (Ray's raylet and gcs_server)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _cpu_seconds() -> float:
    """CPU seconds spent by the whole machine so far (every process; /proc/stat), idle and iowait left out."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / ticks


def bench_cluster(calls: tuple[int, ...] = (1,), seconds: float = 20.0, room: int = 4321,
                  calls_per_worker: int = 1, captions: bool = True) -> dict:
    """`captions`: the workers caption their calls (off: what a call costs without the recogniser)."""
    from avcall.app.cluster import ClusterConfig, start_ray, stop_ray
    from avcall.app.janus import LocalJanus

    import ray

    folder = Path(tempfile.mkdtemp(prefix="avcall-bench-cluster-"))
    clip = _clip(folder, WARMUP_S + seconds + FAILOVER_WAIT_S + 60)
    cpu0, t0 = _cpu_seconds(), time.monotonic()
    time.sleep(5.0)
    busy_before = round((_cpu_seconds() - cpu0) / (time.monotonic() - t0), 2)  # other work on the machine
    janus = LocalJanus()
    janus.start()
    runs = []
    try:  # Ray prints its report of the killed worker to stdout: to stderr here, stdout is the JSON's
        with contextlib.redirect_stdout(sys.stderr):
            start_ray(ClusterConfig(janus=janus.url, workers=max(calls), calls_per_worker=calls_per_worker))
            for n in calls:
                runs.append(asyncio.run(_one_count(n, seconds, janus.url, clip, room + n, janus.proc.pid,
                                                   calls_per_worker, captions)))
    finally:
        stop_ray()
        janus.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the rendered clip
    return {"what": "room calls through a local Janus (SFU) and Ray CallWorker actors on one node; scripted "
                    "aiortc participants publish a rendered talking clip and receive their processed feed",
            "cpu_cores": os.cpu_count(), "ray": ray.__version__, "janus": "1.1.2 (Debian)",
            "note": "the participants' own encoding and decoding share the node's cores with the workers",
            "machine_cpu_cores_busy_before": busy_before, "captions": captions,
            "runs": runs}
