"""Ray as the scheduler of room calls (issue 25): one `CallWorker` actor per call, a controller that watches a
Janus VideoRoom and gives each new participant a worker, and `avcall cluster up`.

The controller lists the room's publishers twice a second. Each participant (any publisher whose display is
not a worker's `avcall:<feed>`) gets a worker: a warm spare when there is one (imports done, the noise
suppressor's sessions made; a new spare is started behind it), else a new actor. The worker runs the call
(app/worker.RoomCall) until the participant leaves. When a worker's process or node dies, Ray fails the call's
pending `run` with an actor error; the controller kicks the dead worker's feed out of the room (so pages stop
waiting for it) and gives the call to the next worker: the participant sees a gap, then the processed feed
again. Each actor declares what a call needs (`--worker-cpus`, `--worker-gpus`), so Ray places calls on
nodes with room.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field

from avcall.app.janus import JanusError, JanusSession
from avcall.app.worker import DISPLAY_PREFIX, WorkerConfig

POLL_S = 0.5
_RAY_TEMP: list[str] = []  # the temporary folders of the local heads this process started
RETRY_S = 1.0  # a worker that could not start the call (the feed not ready yet) tries again after this
MAX_START_ERRORS = 3


@dataclass
class ClusterConfig:
    janus: str
    room: int = 1234
    address: str | None = None  # a Ray cluster's head ("HOST:6379"); None: a local head on loopback
    workers: int = 2  # local head: call slots (CPUs Ray may hand out), a spare included
    worker_cpus: float = 1.0  # what one call declares (the README: a whole call costs about one core)
    worker_gpus: float = 0.0
    spare: bool = True  # keep one warm worker ready for the next call or a failover
    enhance: bool = True
    captions: bool = True


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
        slots = cfg.workers + (1 if cfg.spare else 0)
        if temp_dir is None:  # short: Ray's sockets live in it
            temp_dir = tempfile.mkdtemp(prefix="avray-", dir="/tmp")
            _RAY_TEMP.append(temp_dir)
        ray.init(num_cpus=max(1, round(slots * cfg.worker_cpus)), num_gpus=0 if not cfg.worker_gpus else None,
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
    """The CallWorker actor class with the resources one call declares."""
    import ray

    @ray.remote(num_cpus=cfg.worker_cpus, num_gpus=cfg.worker_gpus, max_restarts=0, max_concurrency=8)
    class CallWorker:
        """One call at a time: warm at start, then `run` until its participant leaves."""

        def __init__(self, enhance: bool) -> None:
            from avcall.app.worker import warm_up

            self.warm_s = warm_up(enhance)
            self.call = None

        def info(self) -> dict:
            return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "warm_s": self.warm_s}

        async def run(self, wcfg: WorkerConfig) -> dict:
            from avcall.app.worker import RoomCall

            self.call = RoomCall(wcfg)
            try:
                return asdict(await self.call.run())
            finally:
                self.call = None

        async def status(self) -> dict | None:
            return asdict(self.call.state) if self.call is not None else None

        async def stop(self) -> None:
            if self.call is not None:
                self.call.stop()

    return CallWorker


class Controller:
    """Assigns each participant of the room to a CallWorker and re-assigns the call when its worker dies."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self.CallWorker = worker_class(cfg)
        self.calls: dict[int, Assignment] = {}
        self.failovers: list[Failover] = []
        self.ended: list[dict] = []
        self._tasks: dict[int, asyncio.Task] = {}
        self._spare: asyncio.Task | None = None
        self._workers: dict[int, object] = {}  # feed -> actor handle
        self.present: set[int] = set()  # the participants' feeds in the room at the last look
        self.given_up: set[int] = set()  # feeds whose call failed to start MAX_START_ERRORS times

    # --- workers ----------------------------------------------------------------------------------------
    async def _new_worker(self):
        worker = self.CallWorker.remote(self.cfg.enhance)
        info = await worker.info.remote()  # returns once the actor is up and warm
        return worker, info

    def _keep_spare(self) -> None:
        if self.cfg.spare and self._spare is None:
            self._spare = asyncio.ensure_future(self._new_worker())

    async def _take_worker(self):
        if self._spare is not None:
            spare, self._spare = self._spare, None
            try:
                worker = await spare
            except Exception:  # noqa: BLE001 - the spare died before it was used: make another
                worker = await self._new_worker()
        else:
            worker = await self._new_worker()
        self._keep_spare()
        return worker

    # --- calls ------------------------------------------------------------------------------------------
    async def _serve(self, feed: int, janus: JanusSession) -> None:
        """One participant's call, on one worker after another, until the participant leaves."""
        from ray.exceptions import RayActorError, RayTaskError

        failover: Failover | None = None
        errors = 0  # calls that failed to start for another reason than a feed not ready yet
        while True:
            worker, info = await self._take_worker()
            publisher_id = random.randrange(1, 2**52)
            self._workers[feed] = worker
            self.calls[feed] = Assignment(feed, info["pid"], publisher_id, info.get("node"))
            wcfg = WorkerConfig(self.cfg.janus, self.cfg.room, feed, publisher_id, enhance=self.cfg.enhance,
                                captions=self.cfg.captions)
            run = worker.run.remote(wcfg)
            watch = asyncio.ensure_future(self._published(worker, failover)) if failover else None
            try:
                state = await run
                self.ended.append({"feed": feed, "ended": state.get("ended"), "at": time.time()})
                self.calls.pop(feed, None)
                self._workers.pop(feed, None)
                await self._release(worker)
                return
            except RayActorError:
                failover = Failover(feed, info["pid"], time.time())
                self.failovers.append(failover)
                await self._kick(janus, publisher_id)
            except RayTaskError as err:  # the call could not start (the feed not ready yet, or gone)
                await self._release(worker)
                failover = None
                if "No such feed" not in str(err):
                    errors += 1
                    self.ended.append({"feed": feed, "ended": f"error: {err.cause if hasattr(err, 'cause') else err}",
                                       "at": time.time()})
                await asyncio.sleep(RETRY_S)
                if errors >= MAX_START_ERRORS:  # something other than time is wrong: this participant waits
                    self.given_up.add(feed)  # until they publish again (a new feed id)
                    self.calls.pop(feed, None)
                    self._workers.pop(feed, None)
                    return
                if feed not in self.present:  # the participant left meanwhile
                    self.calls.pop(feed, None)
                    self._workers.pop(feed, None)
                    return
            finally:
                if watch is not None and not watch.done():
                    watch.cancel()

    async def _published(self, worker, failover: Failover) -> None:
        """Stamps the failover once the new worker's feed is published."""
        while failover.republished_at is None:
            state = await worker.status.remote()
            if state and state.get("published_at"):
                failover.republished_at = state["published_at"]
                return
            await asyncio.sleep(0.05)

    async def _release(self, worker) -> None:
        """A worker whose call ended: kept as the spare if none is there, else ended."""
        import ray

        if self.cfg.spare and self._spare is None:
            future = asyncio.get_running_loop().create_future()
            future.set_result((worker, await worker.info.remote()))
            self._spare = future
        else:
            ray.kill(worker)

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
                try:
                    await asyncio.wait_for(stop.wait(), POLL_S)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.shutdown(janus)

    async def shutdown(self, janus: JanusSession) -> None:
        import ray

        for worker in list(self._workers.values()):
            try:
                await asyncio.wait_for(worker.stop.remote(), 2)
            except Exception:  # noqa: BLE001 - dead already
                pass
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for worker in self._workers.values():
            ray.kill(worker)
        if self._spare is not None:
            if self._spare.done() and not self._spare.cancelled() and self._spare.exception() is None:
                ray.kill(self._spare.result()[0])
            self._spare.cancel()
        await janus.close()

    def status(self) -> dict:
        return {"room": self.cfg.room, "janus": self.cfg.janus,
                "calls": {str(f): asdict(a) for f, a in self.calls.items()},
                "failovers": [{**asdict(f), "seconds": f.seconds} for f in self.failovers],
                "ended": self.ended[-20:], "spare": self._spare is not None and self._spare.done()}


# --- avcall cluster up -------------------------------------------------------------------------------------
async def serve_cluster(cfg: ClusterConfig, host: str, port: int, token: str | None,
                        ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """The controller and the room page (with its Janus proxy and /cluster status) in one event loop."""
    from aiohttp import web

    from avcall.app.room import add_room_routes
    from avcall.app.serve import ServeConfig, Server

    from avcall.app.janus import ensure_room

    await ensure_room(cfg.janus, cfg.room)  # before the page is served: a participant may come at once
    controller = Controller(cfg)
    server = Server(ServeConfig(host=host, port=port, token=token, enhance=False, captions=False))
    app = server.app()
    add_room_routes(app, server, cfg.janus, cfg.room, status=controller.status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    url = f"http://{host}:{port}/room" + (f"?token={token}" if token else "")
    print(f"avcall cluster: room {cfg.room}: open {url} (status at /cluster; Ctrl-C to stop)", flush=True)
    stop = stop or asyncio.Event()
    task = asyncio.ensure_future(controller.run(stop))
    if ready is not None:
        ready.set()
    try:
        await asyncio.wait([task, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_cluster(args) -> int:
    """`avcall cluster up`: Janus (unless one answers at --janus), a local Ray head or --address, the
    controller and the room page, until Ctrl-C."""
    from avcall.app.janus import LocalJanus, janus_reachable
    from avcall.app.serve import new_token
    from avcall.pipelines.errors import InputError

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
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
                        worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus, spare=not args.no_spare,
                        enhance=not args.no_enhance, captions=not args.no_captions)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends it as Ctrl-C does: calls, Ray, Janus stopped
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
    c = commands.add_parser("cluster", help="calls through a Janus room, one Ray-scheduled worker per call",
                            description="`avcall cluster up` starts what a room of processed calls needs: Janus "
                            "(a local one on 127.0.0.1 unless --janus names one that answers), a Ray head on "
                            "loopback with --workers call slots (or joins the Ray cluster at --address), a "
                            "controller that gives each participant of the room a CallWorker actor (and gives "
                            "the call to another when a worker dies), and the room page at "
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
    c.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs one call declares to Ray (default 1)")
    c.add_argument("--worker-gpus", type=float, default=0.0, help="GPUs one call declares to Ray (default 0)")
    c.add_argument("--no-spare", action="store_true", help="no warm spare worker (a failover then waits for a "
                   "new actor to start)")
    c.add_argument("--no-enhance", action="store_true", help="workers pass the voice through")
    c.add_argument("--no-captions", action="store_true", help="workers send no captions")
