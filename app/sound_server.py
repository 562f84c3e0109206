"""A private PulseAudio server for `avcall bench echo` and the tests: Debian's `pulseaudio` binary started in
a fresh runtime folder (its own socket, HOME and state; no system service, no other client sees it), with
only the modules its script loads, ended with the block.

`env` names it to every libpulse client (pactl, paplay, pulsectl, `avcall live` in a subprocess);
`use()` points this process's clients at it for a block.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from avcall.pipelines.errors import DeviceError

# the null sink a call app would play on, made the default: what the loudspeaker plays
SPEAKERS = ["load-module module-null-sink sink_name=speakers rate=48000 channels=1 channel_map=mono "
            "sink_properties=device.description=Speakers", "set-default-sink speakers"]


def pulseaudio_binary() -> str | None:
    return shutil.which("pulseaudio")


@dataclass
class PrivateServer:
    folder: Path
    env: dict[str, str]  # the variables that point a libpulse client at this server
    process: subprocess.Popen

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env={**os.environ, **self.env}, capture_output=True, text=True,
                              check=True, timeout=10).stdout

    @contextmanager
    def use(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def private_pulseaudio(script: list[str] = (), *, timeout_s: float = 10.0) -> Iterator[PrivateServer]:
    """A PulseAudio server running `script` (pactl-file lines, after its socket module) for the block."""
    binary = pulseaudio_binary()
    if binary is None:
        raise DeviceError("no pulseaudio binary (Debian/Ubuntu: apt-get install pulseaudio pulseaudio-utils)")
    # a short folder: the socket's path must fit a sockaddr_un (108 bytes)
    folder = Path(tempfile.mkdtemp(prefix="avcall-pa-"))
    (folder / "run").mkdir()
    (folder / "home").mkdir()
    config = folder / "server.pa"
    config.write_text("\n".join(["load-module module-native-protocol-unix auth-anonymous=1", *script]) + "\n")
    socket = folder / "run" / "pulse" / "native"
    env = {"XDG_RUNTIME_DIR": str(folder / "run"), "HOME": str(folder / "home"), "PULSE_SERVER": f"unix:{socket}"}
    log = open(folder / "server.log", "wb")
    process = subprocess.Popen([binary, "-n", "-F", str(config), "--daemonize=no", "--exit-idle-time=-1",
                                "--disable-shm=yes", "--use-pid-file=no", "--system=no", "--log-target=stderr"],
                               env={**os.environ, **env}, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    server = PrivateServer(folder, env, process)
    try:
        _wait_ready(server, timeout_s)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        for _ in range(3):  # a client ending just now may still write its cookie under HOME
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                break
            time.sleep(0.2)


def _wait_ready(server: PrivateServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = (server.folder / "server.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise DeviceError(f"pulseaudio ended at start: {' '.join(tail)}")
        done = subprocess.run(["pactl", "info"], env={**os.environ, **server.env}, capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise DeviceError(f"pulseaudio did not answer within {timeout_s:.0f} s")
