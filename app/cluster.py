"""Ray as the scheduler of room calls (issue 25): `CallWorker` actors that each hold up to K calls
(`--calls-per-worker`, default 1), a controller that watches a Janus VideoRoom and gives each new participant
a free slot on a worker, and `avcall cluster up`.

The controller lists the room's publishers twice a second. Each participant (any publisher whose display is
not a worker's `avcall:<feed>`) gets a slot: on a warm worker with a free one (imports done, the noise
suppressor's sessions made), the fullest first; when that takes the last free slot, a new worker is started
behind it, so there is always a warm spare slot. A worker runs its calls (app/worker.RoomCall) as concurrent
tasks of one process, so they share its onnxruntime sessions (pipelines/runtime.shared_session: one per model
per process) and, for a model with a batch axis, one batched step per hop (pipelines/runtime.batched_session).
When a worker's process or node dies, Ray fails each of its calls' pending `run` with an actor error; for each
the controller kicks the dead worker's feed out of the room (so pages stop waiting for it) and gives the call
to a free slot: the participant sees a gap, then the processed feed again. Each actor declares what its K
calls need (`--worker-cpus` per call times K, `--worker-gpus` as given), so Ray places workers on nodes with
room.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from avcall.app.janus import DISPLAY_PREFIX, JanusError, JanusSession
from avcall.app.options import add_enhance_argument
from avcall.app.room_call import WorkerConfig
from avcall.pipelines.features import default_enhancer

POLL_S = 0.5
_RAY_TEMP: list[str] = []  # the temporary folders of the local heads this process started
RETRY_S = 1.0  # a worker that could not start the call (the feed not ready yet) tries again after this
MAX_START_ERRORS = 3
MAX_WORKER_STARTS = 3  # new workers that died before their first call, in a row: the call gives up
STATUS_CALLS = 8  # concurrent calls an actor takes besides its calls' `run`s (info, status, stop)


@dataclass
class ClusterConfig:
    janus: str
    room: int = 1234
    address: str | None = None  # a Ray cluster's head ("HOST:6379"); None: a local head on loopback
    workers: int = 2  # local head: calls it may hold at once (CPUs Ray may hand out); a spare comes on top
    worker_cpus: float = 1.0  # what one call declares (the README: a whole call costs about one core)
    worker_gpus: float = 0.0  # what one worker declares, whatever its K
    calls_per_worker: int = 1  # K: calls one worker process holds at once, sharing its model sessions
    spare: bool = True  # keep a warm free slot ready for the next call or a failover
    enhance: str = field(default_factory=default_enhancer)  # what each call starts with: a suppressor, or "off"
    captions: bool = True
    lip_gate: bool = True


@dataclass
class Failover:
    feed: int
    dead_pid: int | None
    detected_at: float  # time.time() when Ray reported the worker dead
    republished_at: float | None = None  # when the next worker's feed was in the room again

    @property
    def seconds(self) -> float | None:
        return None if self.republished_at is None else round(self.republished_at - self.detected_at, 3)


@dataclass
class Assignment:
    feed: int
    worker_pid: int
    publisher_id: int
    node: str | None
    since: float = field(default_factory=time.time)


@dataclass
class _Worker:
    """A live CallWorker actor as the controller sees it: its handle, what it said of itself, its calls."""

    handle: object
    info: dict
    slots: int
    feeds: set = field(default_factory=set)
    dead: bool = False

    @property
    def free(self) -> int:
        return 0 if self.dead else self.slots - len(self.feeds)


def worker_resources(cfg: ClusterConfig) -> dict:
    """What one CallWorker declares to Ray: `worker_cpus` for each of its K calls, `worker_gpus` as given, and
    room for K calls' `run` besides its status calls."""
    k = max(1, cfg.calls_per_worker)
    return {"num_cpus": cfg.worker_cpus * k, "num_gpus": cfg.worker_gpus, "max_concurrency": k + STATUS_CALLS}


def local_cpus(cfg: ClusterConfig) -> int:
    """A local head's CPUs: enough workers for `cfg.workers` calls, K to a worker, and one more for the spare."""
    k = max(1, cfg.calls_per_worker)
    workers = -(-cfg.workers // k) + (1 if cfg.spare else 0)
    return max(1, round(workers * k * cfg.worker_cpus))


def overcommitted(cfg: ClusterConfig, cores: int) -> str | None:
    """What to tell the user when a local head is given more call slots than its machine can run: a call took
    0.86-1.10 of a core on a 2-core node, where two calls did not keep up (docs/cluster.md), and Janus, Ray, the
    controller and the page need the rest of a core."""
    if cfg.address is not None or cfg.workers <= max(1, cores - 1):
        return None
    return (f"avcall cluster: {cfg.workers} call slots on a machine with {cores} cores: a call takes about one core "
            f"(docs/cluster.md), so past {max(1, cores - 1)} calls their voice falls behind and goes through "
            "unprocessed; --workers sets the slots")


def start_ray(cfg: ClusterConfig, temp_dir: str | None = None) -> dict:
    """Connects to `cfg.address`, or starts a small local head on this machine (no dashboard, a small object
    store, logs in a temporary folder; Ray 2.60's servers listen on every interface, behind its token
    authentication); what Ray says it has."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
             "logging_level": "warning"}
    if cfg.address:
        ray.init(address=cfg.address, **quiet)
    else:
        if temp_dir is None:  # short: Ray's sockets live in it
            temp_dir = tempfile.mkdtemp(prefix="avray-", dir="/tmp")
            _RAY_TEMP.append(temp_dir)
        ray.init(num_cpus=local_cpus(cfg), num_gpus=0 if not cfg.worker_gpus else None,
                 object_store_memory=80 * 1024 * 1024, _temp_dir=temp_dir, **quiet)
    return ray.cluster_resources()


def stop_ray() -> None:
    """Shuts Ray down and removes the temporary folders a local head was given (its logs and sockets)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    while _RAY_TEMP:
        shutil.rmtree(_RAY_TEMP.pop(), ignore_errors=True)


def worker_class(cfg: ClusterConfig):
    """The CallWorker actor class with the resources K calls declare."""
    import ray

    @ray.remote(max_restarts=0, **worker_resources(cfg))
    class CallWorker:
        """Up to `slots` calls at once in this one process: warm at start, then each `run` until its participant
        leaves. The calls share the process' model sessions (and batched steps where a model has a batch
        axis)."""

        def __init__(self, enhance: str, slots: int = 1) -> None:
            from avcall.app.room_call import warm_up

            self.warm_s = warm_up(enhance)
            self.slots = max(1, slots)
            self.calls: dict = {}  # feed -> RoomCall

        def info(self) -> dict:
            """Who it is and what its process shares: its pid and node, its calls' feeds, the model file of each
            onnxruntime session of the process (pipelines/runtime.session_report) and its batched steps, its
            recogniser processes with their calls' sessions (one per engine, whatever the calls), and the CPU
            seconds its process has spent so far on each part of its calls (app/eval/usage.cpu_by_part)."""
            from avcall.app.eval.usage import cpu_by_part
            from avcall.pipelines.asr import RecogniserProcess
            from avcall.pipelines.runtime import session_report

            return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "warm_s": self.warm_s,
                    "slots": self.slots, "feeds": sorted(self.calls), "cpu_parts_s": cpu_by_part(),
                    "recognisers": RecogniserProcess.running(), **session_report()}

        async def run(self, wcfg: WorkerConfig) -> dict:
            from avcall.app.room_call import RoomCall

            if wcfg.feed in self.calls or len(self.calls) >= self.slots:
                raise RuntimeError(f"worker {os.getpid()}: no free slot for feed {wcfg.feed} "
                                   f"(calls {sorted(self.calls)})")
            call = self.calls[wcfg.feed] = RoomCall(wcfg)
            try:
                return asdict(await call.run())
            finally:
                self.calls.pop(wcfg.feed, None)

        async def status(self, feed: int | None = None) -> dict | None:
            call = self.calls.get(feed) if feed is not None else next(iter(self.calls.values()), None)
            return asdict(call.state) if call is not None else None

        async def stop(self, feed: int | None = None) -> None:
            for f, call in list(self.calls.items()):
                if feed is None or f == feed:
                    call.stop()

    return CallWorker


class Controller:
    """Gives each participant of the room a slot on a CallWorker and re-assigns the call when its worker dies."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self.slots = max(1, cfg.calls_per_worker)
        self.CallWorker = worker_class(cfg)
        self.calls: dict[int, Assignment] = {}
        self.failovers: list[Failover] = []
        self.ended: list[dict] = []
        self._tasks: dict[int, asyncio.Task] = {}
        self.pool: list[_Worker] = []  # the live workers, warm, with their calls
        self._starting: asyncio.Task | None = None  # a worker being started (the next spare slots)
        self._lock = asyncio.Lock()  # one participant takes a slot at a time
        self.present: set[int] = set()  # the participants' feeds in the room at the last look
        self.given_up: set[int] = set()  # feeds whose call failed to start MAX_START_ERRORS times

    # --- workers ----------------------------------------------------------------------------------------
    async def _new_worker(self) -> _Worker:
        handle = self.CallWorker.remote(self.cfg.enhance, self.slots)
        info = await handle.info.remote()  # returns once the actor is up and warm
        worker = _Worker(handle, info, self.slots)
        self.pool.append(worker)
        return worker

    def _free(self) -> _Worker | None:
        """The live worker with a free slot, the fullest first (the emptiest stays the spare)."""
        free = [w for w in self.pool if w.free > 0]
        return min(free, key=lambda w: w.free) if free else None

    def _keep_spare(self) -> None:
        """Starts a worker when no live one has a free slot (and none is starting)."""
        if self._starting is not None and self._starting.done():
            if not self._starting.cancelled():
                self._starting.exception()  # retrieved: a spare that died before it was used is forgotten
            self._starting = None
        if self.cfg.spare and self._starting is None and self._free() is None:
            self._starting = asyncio.ensure_future(self._new_worker())

    async def _take_slot(self, feed: int) -> _Worker:
        """A free slot for `feed`: on a warm worker, else on the one starting, else on a new one."""
        async with self._lock:
            failures = 0
            while True:
                worker = self._free()
                if worker is not None:
                    worker.feeds.add(feed)
                    self._keep_spare()
                    return worker
                if self._starting is None:
                    self._starting = asyncio.ensure_future(self._new_worker())
                starting = self._starting
                try:
                    await asyncio.shield(starting)
                except Exception:  # noqa: BLE001 - it died before it was used: make another
                    failures += 1
                    if failures >= MAX_WORKER_STARTS:
                        raise
                finally:
                    if self._starting is starting and starting.done():
                        self._starting = None

    def _dead(self, worker: _Worker) -> None:
        worker.dead = True
        if worker in self.pool:
            self.pool.remove(worker)

    # --- calls ------------------------------------------------------------------------------------------
    async def _serve(self, feed: int, janus: JanusSession) -> None:
        """One participant's call, on one worker after another, until the participant leaves."""
        from ray.exceptions import RayActorError, RayTaskError

        failover: Failover | None = None
        errors = 0  # calls that failed to start for another reason than a feed not ready yet
        while True:
            worker = await self._take_slot(feed)
            info = worker.info
            publisher_id = random.randrange(1, 2**52)
            self.calls[feed] = Assignment(feed, info["pid"], publisher_id, info.get("node"))
            wcfg = WorkerConfig(self.cfg.janus, self.cfg.room, feed, publisher_id, enhance=self.cfg.enhance,
                                captions=self.cfg.captions, lip_gate=self.cfg.lip_gate)
            run = worker.handle.run.remote(wcfg)
            watch = asyncio.ensure_future(self._published(worker, feed, failover)) if failover else None
            try:
                state = await run
                self.ended.append({"feed": feed, "ended": state.get("ended"), "at": time.time()})
                self.calls.pop(feed, None)
                self._release(worker, feed)
                return
            except RayActorError:
                self._dead(worker)  # every call of it comes here: each goes to a free slot
                failover = Failover(feed, info["pid"], time.time())
                self.failovers.append(failover)
                await self._kick(janus, publisher_id)
            except RayTaskError as err:  # the call could not start (the feed not ready yet, or gone)
                self._release(worker, feed)
                failover = None
                if "No such feed" not in str(err):
                    errors += 1
                    self.ended.append({"feed": feed, "ended": f"error: {err.cause if hasattr(err, 'cause') else err}",
                                       "at": time.time()})
                await asyncio.sleep(RETRY_S)
                if errors >= MAX_START_ERRORS:  # something other than time is wrong: this participant waits
                    self.given_up.add(feed)  # until they publish again (a new feed id)
                    self.calls.pop(feed, None)
                    return
                if feed not in self.present:  # the participant left meanwhile
                    self.calls.pop(feed, None)
                    return
            finally:
                if watch is not None and not watch.done():
                    watch.cancel()

    async def _published(self, worker: _Worker, feed: int, failover: Failover) -> None:
        """Stamps the failover once the new worker's feed for `feed` is published."""
        while failover.republished_at is None:
            state = await worker.handle.status.remote(feed)
            if state and state.get("published_at"):
                failover.republished_at = state["published_at"]
                return
            await asyncio.sleep(0.05)

    def _release(self, worker: _Worker, feed: int) -> None:
        """A call ended: its slot is free again. A worker left with no call is kept while its slots are the
        only free ones (the spare), else ended."""
        import ray

        worker.feeds.discard(feed)
        if worker.feeds or worker.dead:
            return
        others = any(w.free > 0 for w in self.pool if w is not worker)
        if not self.cfg.spare or others:
            self._dead(worker)
            ray.kill(worker.handle)

    async def refresh(self) -> None:
        """Each live worker's own report (its calls, its process' sessions and batched steps), for status."""
        async def one(worker: _Worker) -> None:
            from ray.exceptions import RayActorError

            try:
                worker.info = await asyncio.wait_for(worker.handle.info.remote(), 1.0)
            except RayActorError:  # dead: no new call goes to it (its calls' tasks hear of it themselves)
                self._dead(worker)
            except Exception:  # noqa: BLE001 - busy: the last report stands
                pass

        await asyncio.gather(*(one(w) for w in list(self.pool)))

    async def _kick(self, janus: JanusSession, publisher_id: int) -> None:
        try:
            handle = await janus.attach()
            await handle.request({"request": "kick", "room": self.cfg.room, "id": publisher_id})
            await handle.detach()
        except (JanusError, OSError, asyncio.TimeoutError):
            pass  # gone already (its session closed, or Janus timed it out)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watches the room until `stop` is set; ends every call then."""
        from avcall.app.janus import ensure_room

        stop = stop or asyncio.Event()
        await ensure_room(self.cfg.janus, self.cfg.room)
        janus = await JanusSession(self.cfg.janus).open()
        watcher = await janus.attach()
        self._keep_spare()
        refresh: asyncio.Future | None = None
        try:
            while not stop.is_set():
                try:
                    listed = await watcher.request({"request": "listparticipants", "room": self.cfg.room})
                except (JanusError, OSError, asyncio.TimeoutError):
                    listed = {}
                feeds = {p["id"] for p in listed.get("participants", [])
                         if p.get("publisher") and not str(p.get("display", "")).startswith(DISPLAY_PREFIX)}
                if listed:
                    self.present = feeds
                for feed in feeds - set(self._tasks) - self.given_up:
                    self._tasks[feed] = asyncio.ensure_future(self._serve(feed, janus))
                for feed, task in list(self._tasks.items()):
                    if task.done():
                        del self._tasks[feed]
                        if not task.cancelled() and task.exception() is not None:
                            self.ended.append({"feed": feed, "ended": f"controller: {task.exception()!r}",
                                               "at": time.time()})
                self._keep_spare()
                if refresh is None or refresh.done():
                    refresh = asyncio.ensure_future(self.refresh())
                try:
                    await asyncio.wait_for(stop.wait(), POLL_S)
                except asyncio.TimeoutError:
                    pass
        finally:
            if refresh is not None:
                refresh.cancel()
            await self.shutdown(janus)

    async def shutdown(self, janus: JanusSession) -> None:
        import ray

        for worker in list(self.pool):
            if worker.feeds:
                try:
                    await asyncio.wait_for(worker.handle.stop.remote(), 2)
                except Exception:  # noqa: BLE001 - dead already
                    pass
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for worker in self.pool:
            ray.kill(worker.handle)
        if self._starting is not None:
            if self._starting.done() and not self._starting.cancelled() and self._starting.exception() is None:
                if self._starting.result() not in self.pool:
                    ray.kill(self._starting.result().handle)
            self._starting.cancel()
        await janus.close()

    def status(self) -> dict:
        workers = [{"pid": w.info.get("pid"), "node": w.info.get("node"), "slots": w.slots,
                    "feeds": sorted(w.feeds), "sessions": w.info.get("sessions"), "batched": w.info.get("batched"),
                    "recognisers": w.info.get("recognisers")}
                   for w in self.pool]
        return {"room": self.cfg.room, "janus": self.cfg.janus, "calls_per_worker": self.slots,
                "calls": {str(f): asdict(a) for f, a in self.calls.items()},
                "workers": workers,
                "failovers": [{**asdict(f), "seconds": f.seconds} for f in self.failovers],
                "ended": self.ended[-20:], "spare": any(w.free > 0 for w in self.pool)}


# --- avcall cluster up -------------------------------------------------------------------------------------
async def serve_cluster(cfg: ClusterConfig, host: str, port: int, token: str | None,
                        ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """The controller and the room page (with its Janus proxy and /cluster status) in one event loop."""
    from aiohttp import web

    from avcall.app.janus import ensure_room
    from avcall.app.pages import guarded_app
    from avcall.app.room import add_room_routes
    from avcall.pipelines.features import enhancers

    await ensure_room(cfg.janus, cfg.room)  # before the page is served: a participant may come at once
    controller = Controller(cfg)
    app = guarded_app(host)
    add_room_routes(app, token, cfg.janus, cfg.room, ("off", *enhancers()), cfg.enhance, status=controller.status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    url = f"http://{host}:{port}/room" + (f"?token={token}" if token else "")
    print(f"avcall cluster: room {cfg.room}: open {url} (status at /cluster; Ctrl-C to stop)", flush=True)
    stop = stop or asyncio.Event()
    task = asyncio.ensure_future(controller.run(stop))
    loop = asyncio.get_running_loop()
    # Ctrl-C and `kill` end the calls, then Ray and Janus, in order; handled by the loop, so they work also
    # where the process was started with SIGINT ignored (a background job of a non-interactive shell, CI)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await asyncio.wait([task, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def cmd_cluster(args) -> int:
    """`avcall cluster up`: Janus (unless one answers at --janus), a local Ray head or --address, the
    controller and the room page, until Ctrl-C."""
    from avcall.app.janus import LocalJanus, janus_reachable
    from avcall.app.pages import new_token
    from avcall.pipelines.errors import InputError

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.calls_per_worker < 1:
        raise InputError("--calls-per-worker must be at least 1")
    from avcall.pipelines.features import enhancers

    if args.enhance != "off" and args.enhance not in enhancers():
        raise InputError(f"--enhance {args.enhance}: not one that ships here ({', '.join(enhancers()) or 'none'})")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        raise InputError(f"--host {args.host} opens the room page to the network: give --token")
    token = new_token() if args.token == "new" else args.token
    local = None
    janus = args.janus
    if janus is None or not janus_reachable(janus):
        if janus is not None and not janus.startswith(("http://127.0.0.1", "http://localhost")):
            raise InputError(f"no Janus answers at {janus}")
        local = LocalJanus()
        janus = local.start()
        print(f"avcall cluster: started Janus at {janus} (config in {local.folder})", flush=True)
    cfg = ClusterConfig(janus=janus, room=args.room, address=args.address, workers=args.workers,
                        worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus,
                        calls_per_worker=args.calls_per_worker, spare=not args.no_spare, enhance=args.enhance,
                        captions=not args.no_captions, lip_gate=args.lip_gate == "on")
    if warning := overcommitted(cfg, os.cpu_count() or 1):
        print(warning, file=sys.stderr, flush=True)
    try:
        resources = start_ray(cfg)
        print(f"avcall cluster: Ray {'at ' + cfg.address if cfg.address else 'head on this machine'}: "
              f"{json.dumps({k: v for k, v in resources.items() if not k.startswith('node:')})}", flush=True)
        try:
            asyncio.run(serve_cluster(cfg, args.host, args.port, token))
        except KeyboardInterrupt:
            pass
    finally:
        stop_ray()
        if local is not None:
            local.stop()
    return 0


def add_parser(commands) -> None:
    c = commands.add_parser("cluster", help="calls through a Janus room, on Ray-scheduled workers",
                            description="`avcall cluster up` starts what a room of processed calls needs: Janus "
                            "(a local one on 127.0.0.1 unless --janus names one that answers), a Ray head on "
                            "loopback with --workers call slots (or joins the Ray cluster at --address), a "
                            "controller that gives each participant of the room a slot on a CallWorker actor "
                            "(one process holding up to --calls-per-worker calls, which share its model "
                            "sessions; the calls go to free slots elsewhere when a worker dies), and the room "
                            "page at "
                            "http://127.0.0.1:8080/room with its Janus proxy (the token and origin checks of "
                            "`avcall serve` apply) and the status at /cluster.")
    c.add_argument("action", choices=["up"], help="up: start it all and run until Ctrl-C")
    c.add_argument("--workers", type=int, default=2, metavar="N",
                   help="local head: calls it may hold at once (default 2); a warm spare comes on top")
    c.add_argument("--address", metavar="HOST:PORT", help="join this Ray cluster's head instead of starting one")
    c.add_argument("--janus", metavar="URL", help="an existing Janus' HTTP API (default: start one on loopback)")
    c.add_argument("--room", type=int, default=1234, help="the VideoRoom (made if missing; default 1234)")
    c.add_argument("--host", default="127.0.0.1", help="the room page's address (default 127.0.0.1; others need "
                   "--token)")
    c.add_argument("--port", type=int, default=8080, help="the room page's port (default 8080)")
    c.add_argument("--token", help="a secret the page must present (?token=...); 'new' makes one")
    c.add_argument("--calls-per-worker", type=int, default=1, metavar="K",
                   help="calls one worker process holds at once, sharing its model sessions and batched steps "
                   "(default 1)")
    c.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs one call declares to Ray; a worker "
                   "declares K times this (default 1)")
    c.add_argument("--worker-gpus", type=float, default=0.0, help="GPUs one worker declares to Ray, whatever "
                   "its K (default 0)")
    add_enhance_argument(c, "the noise suppressor each call starts with (the page switches it; avcall-ao has a "
                         "batch axis: a worker steps all its calls in one batched call per hop)")
    c.add_argument("--no-spare", action="store_true", help="no warm spare worker (a failover then waits for a "
                   "new actor to start)")
    c.add_argument("--no-captions", action="store_true", help="workers send no captions")
    c.add_argument("--lip-gate", choices=["on", "off"], default="on", help="on (default): each worker holds another "
                   "voice back while its participant's lips are still; off")
