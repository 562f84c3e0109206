"""Janus WebRTC Gateway (Debian's `janus` 1.1.2): a local instance whose API is bound to loopback, and a small
client of its HTTP API (aiohttp) for the VideoRoom plugin.

`LocalJanus` writes a config folder of its own in a temporary directory (the HTTP transport on 127.0.0.1 only,
the VideoRoom plugin only, ICE candidates only on this machine's own IPv4 addresses (see `ice_list`), no
STUN), starts `janus -F that-folder` and stops it.
`JanusSession` speaks the HTTP API: a session, plugin handles, requests (`message` answered at once for
synchronous VideoRoom requests, by an event for asynchronous ones), a long poll that routes events to their
handle and keeps the session alive.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from avcall.pipelines.errors import InputError

DISPLAY_PREFIX = "avcall:"  # the display name of a worker's feed: avcall:<the participant's feed id>
JANUS_JS_DIRS = (Path("/usr/share/javascript/janus-gateway"),)  # Debian's libjs-janus-gateway
JANUS_PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEOROOM = "janus.plugin.videoroom"
REQUEST_TIMEOUT_S = 10.0


class JanusError(RuntimeError):
    """Janus answered with an error, or not in time."""


def janus_js() -> Path | None:
    """janus.js as Debian's libjs-janus-gateway installs it (None when it is not installed)."""
    for folder in JANUS_JS_DIRS:
        if (folder / "janus.js").is_file():
            return folder / "janus.js"
    return None


def janus_binary() -> str | None:
    return shutil.which("janus") or (shutil.which("janus", path="/usr/bin:/usr/local/bin:/opt/janus/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ice_list() -> str:
    """The addresses Janus gathers ICE candidates on: this machine's own IPv4 addresses on interfaces other
    than `lo` (Janus skips interfaces flagged loopback, and aioice skips 127.x), no IPv6. Media between two
    addresses of one machine never leaves it: the kernel delivers it locally."""
    import ipaddress

    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout \
        if shutil.which("ip") else ""
    found = [line.split()[3].split("/")[0] for line in out.splitlines()
             if " inet " in line and line.split()[1] != "lo"]
    found = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    if not found:
        raise InputError("Janus gathers ICE candidates only on interfaces that are not loopback, and this machine "
                         "has no IPv4 address on one (a container with only `lo`): give it one, e.g. as root "
                         "`ip link add avcall0 type veth peer name avcall1 && ip addr add 10.254.254.2/32 dev avcall0 "
                         "&& ip link set avcall0 up && ip link set avcall1 up`")
    return ",".join(found)


def _plugin_folder(kind: str) -> Path:
    for root in (JANUS_PLUGINS, Path("/usr/lib/janus"), Path("/opt/janus/lib/janus")):
        if (root / kind).is_dir():
            return root / kind
    return JANUS_PLUGINS / kind


@dataclass
class LocalJanus:
    """A Janus of our own on loopback: its config in a temporary folder, its HTTP API at `url`."""

    port: int = 0  # 0: a free one
    rtp_ports: str = "20000-20999"
    ice_addresses: str | None = None  # None: this machine's own IPv4 addresses that are not 127.x (see ice_list)
    folder: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    def write_config(self) -> Path:
        self.folder = Path(tempfile.mkdtemp(prefix="avcall-janus-"))
        plugins, transports = _plugin_folder("plugins"), _plugin_folder("transports")
        (self.folder / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{self.folder}"
  plugins_folder = "{plugins}"
  transports_folder = "{transports}"
  events_folder = "{_plugin_folder('events')}"
  loggers_folder = "{_plugin_folder('loggers')}"
  debug_level = 3
  session_timeout = 30
  server_name = "avcall"
}}
media: {{
  rtp_port_range = "{self.rtp_ports}"
}}
nat: {{
  nice_debug = false
  full_trickle = false
  ice_enforce_list = "{self.ice_addresses or ice_list()}"
  ignore_mdns = true
}}
plugins: {{
  disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so,libjanus_duktape.so,libjanus_lua.so"
}}
transports: {{
  disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}}
events: {{
  broadcast = false
}}
loggers: {{
  disable = "libjanus_jsonlog.so"
}}
""")
        (self.folder / "janus.transport.http.jcfg").write_text(f"""general: {{
  json = "plain"
  base_path = "/janus"
  http = true
  port = {self.port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{
  admin_http = false
  admin_https = false
}}
""")
        (self.folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        return self.folder

    def start(self, timeout: float = 20.0) -> str:
        exe = janus_binary()
        if exe is None:
            raise InputError("janus is not installed (Debian: apt-get install janus libjs-janus-gateway)")
        if not self.port:
            self.port = free_port()
        folder = self.write_config()
        log = open(folder / "janus.log", "w")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen([exe, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-N",
                                      "-L", str(folder / "janus.file.log")],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise InputError(f"janus exited at start ({self.proc.returncode}): "
                                 f"{(folder / 'janus.log').read_text()[-800:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self.url
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise InputError(f"janus did not open its HTTP API on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.folder is not None and not os.environ.get("AVCALL_KEEP_JANUS_LOGS"):
            shutil.rmtree(self.folder, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child before exec: Linux ends it when the process that started it dies, however that dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass


def janus_reachable(url: str) -> bool:
    """Whether a Janus answers `info` at `url` (a blocking check, for the command line)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/info", timeout=2) as reply:
            return json.loads(reply.read()).get("janus") == "server_info"
    except (OSError, ValueError):
        return False


def _tx() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Handle:
    """One attached plugin handle; its asynchronous events arrive on `events`."""

    session: JanusSession
    id: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def request(self, body: dict, jsep: dict | None = None) -> dict:
        """A synchronous plugin request (create, exists, listparticipants, kick): the plugin's data."""
        reply = await self.session.post(f"/{self.id}", {"janus": "message", "body": body,
                                                         **({"jsep": jsep} if jsep else {})})
        if reply.get("janus") == "success":
            data = reply.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise JanusError(f"{body.get('request')}: {data['error']}")
            return data
        raise JanusError(f"{body.get('request')}: {reply}")

    async def send(self, body: dict, jsep: dict | None = None, expect: str | None = None,
                   timeout: float = REQUEST_TIMEOUT_S) -> tuple[dict, dict | None]:
        """An asynchronous plugin request (join, publish, start): its event's plugin data and jsep."""
        tx = _tx()
        waiter = asyncio.get_running_loop().create_future()
        self.session.waiting[tx] = waiter
        try:
            reply = await self.session.post(f"/{self.id}", {"janus": "message", "body": body, "transaction": tx,
                                                             **({"jsep": jsep} if jsep else {})})
            if reply.get("janus") not in ("ack", "event"):
                raise JanusError(f"{body.get('request')}: {reply}")
            event = reply if reply.get("janus") == "event" else await asyncio.wait_for(waiter, timeout)
        finally:
            self.session.waiting.pop(tx, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        if expect and expect not in data:
            raise JanusError(f"{body.get('request')}: expected {expect!r}, got {data}")
        return data, event.get("jsep")

    async def detach(self) -> None:
        try:
            await self.session.post(f"/{self.id}", {"janus": "detach"})
        except (JanusError, aiohttp.ClientError, asyncio.TimeoutError):
            pass


class JanusSession:
    """A session on Janus' HTTP API; `open()` creates it and starts its long poll, `close()` destroys it."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.id: int | None = None
        self.handles: dict[int, Handle] = {}
        self.waiting: dict[str, asyncio.Future] = {}
        self.http: aiohttp.ClientSession | None = None
        self._poll: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def open(self) -> JanusSession:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S + 30))
        try:
            reply = await self._post(self.url, {"janus": "create"})
        except BaseException:
            await self.http.close()
            raise
        if reply.get("janus") != "success":
            await self.http.close()
            raise JanusError(f"create session: {reply}")
        self.id = reply["data"]["id"]
        self._poll = asyncio.create_task(self._long_poll(), name=f"janus-poll-{self.id}")
        return self

    async def _post(self, url: str, message: dict) -> dict:
        message.setdefault("transaction", _tx())
        async with self.http.post(url, json=message, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as r:
            return await r.json(content_type=None)

    async def post(self, path: str, message: dict) -> dict:
        if self.id is None:
            raise JanusError("the session is not open")
        return await self._post(f"{self.url}/{self.id}{path}", message)

    async def attach(self, plugin: str = VIDEOROOM) -> Handle:
        reply = await self.post("", {"janus": "attach", "plugin": plugin})
        if reply.get("janus") != "success":
            raise JanusError(f"attach {plugin}: {reply}")
        handle = Handle(self, reply["data"]["id"])
        self.handles[handle.id] = handle
        return handle

    async def _long_poll(self) -> None:
        """Janus' events, up to 10 at a time; each long poll also keeps the session alive."""
        try:
            while True:
                try:
                    async with self.http.get(f"{self.url}/{self.id}", params={"maxev": "10"},
                                             timeout=aiohttp.ClientTimeout(total=40)) as r:
                        events = await r.json(content_type=None)
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    await asyncio.sleep(0.5)
                    continue
                for event in events if isinstance(events, list) else [events]:
                    if event.get("janus") == "error" and event.get("error", {}).get("code") == 458:
                        return  # no such session: it timed out or was destroyed
                    self._route(event)
        finally:
            self.closed.set()

    def _route(self, event: dict) -> None:
        waiter = self.waiting.get(event.get("transaction", ""))
        if waiter is not None and not waiter.done() and event.get("janus") == "event":
            waiter.set_result(event)
            return
        handle = self.handles.get(event.get("sender"))
        if handle is not None and event.get("janus") != "keepalive":
            handle.events.put_nowait(event)

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            await asyncio.gather(self._poll, return_exceptions=True)
        if self.id is not None and self.http is not None:
            try:
                await self.post("", {"janus": "destroy"})
            except (JanusError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                pass
        if self.http is not None:
            await self.http.close()


async def ensure_room(url: str, room: int, publishers: int = 64) -> None:
    """Creates the VideoRoom `room` (opus, vp8, data channels allowed) unless it exists."""
    session = await JanusSession(url).open()
    try:
        handle = await session.attach()
        if not (await handle.request({"request": "exists", "room": room})).get("exists"):
            await handle.request({"request": "create", "room": room, "publishers": publishers,
                                  "audiocodec": "opus", "videocodec": "vp8", "description": "avcall",
                                  "notify_joining": True, "bitrate": 1_000_000})
    finally:
        await session.close()
