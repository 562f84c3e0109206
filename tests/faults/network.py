"""A bad network for WebRTC on loopback, in process: every UDP datagram aioice sends (ICE checks, DTLS, RTP,
SCTP) goes through `LossyNetwork`, which loses a share of them and delays the rest by a random jitter (so
some arrive out of order), from a seeded generator; `silence(ports)` drops everything those local ports send
(a peer gone without closing). And `lossy_call`, a served call over whatever network this is, which
`python -m tests.faults.network CLIP` runs too (inside a network namespace with `tc netem`, where the kernel
has it)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LossyNetwork:
    loss: float = 0.0
    jitter_s: float = 0.0
    seed: int = 0
    silenced: set[int] = field(default_factory=set)  # local ports whose datagrams all vanish
    sent: int = 0
    lost: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def install(self, monkeypatch) -> None:
        """Wrap the transport of every aioice socket opened from now on (the test's monkeypatch undoes it)."""
        from aioice.ice import StunProtocol

        connection_made = StunProtocol.connection_made
        network = self

        def wrapped(protocol, transport) -> None:
            connection_made(protocol, LossyTransport(transport, network))

        monkeypatch.setattr(StunProtocol, "connection_made", wrapped)

    def silence(self, ports: set[int]) -> None:
        self.silenced |= ports


class LossyTransport:
    """An asyncio DatagramTransport whose `sendto` goes through a LossyNetwork."""

    def __init__(self, inner, network: LossyNetwork) -> None:
        self.inner, self.network = inner, network
        self.port = inner.get_extra_info("sockname")[1]

    def sendto(self, data: bytes, addr=None) -> None:
        net = self.network
        net.sent += 1
        if self.port in net.silenced or net.rng.random() < net.loss:
            net.lost += 1
            return
        delay = net.rng.uniform(0, net.jitter_s)
        if delay <= 0:
            self.inner.sendto(data, addr)
        else:
            asyncio.get_running_loop().call_later(delay, self._send_later, data, addr)

    def _send_later(self, data: bytes, addr) -> None:
        if not self.inner.is_closing():
            self.inner.sendto(data, addr)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def candidate_ports(sdp: str) -> set[int]:
    """The local ports a description offers as ICE candidates."""
    return {int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ \d \S+ \d+ \S+ (\d+) typ", sdp, re.M)}


async def lossy_call(clip: Path, seconds: float = 10.0) -> dict:
    """A served call (the clip's voice and face, captions on) over the network as it is: what came back to
    the client, what the server heard, and whether the server freed the peer once the client left (told
    or, when the goodbye was lost too, by its timeout)."""
    from avcall.app.serve import ServeConfig
    from tests.app.test_serve import Served, call

    cfg = ServeConfig(peer_timeout_s=3.0)
    async with Served(cfg) as served:
        heard = [0]

        async def listen() -> None:  # the server's side: the hops of voice its pipeline received
            while True:
                for peer in list(served.server.peers.values()):
                    if peer.line.pipeline is not None:
                        heard[0] = max(heard[0], peer.line.pipeline.telemetry()["level_in"]["frames_in"])
                await asyncio.sleep(0.2)

        listener = asyncio.ensure_future(listen())
        try:
            status, _, audio, frames, messages = await call(served.url, clip, seconds)
        finally:
            listener.cancel()
        deadline = asyncio.get_running_loop().time() + cfg.peer_timeout_s + 5
        while served.server.peers and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        captions = [m for m in messages if m["type"] == "caption"]
        return {"status": status, "audio_s": len(audio) / 48_000, "server_heard_s": heard[0] / 100,
                "rms": float(np.sqrt(np.mean(audio ** 2))) if len(audio) else 0.0, "video_frames": frames,
                "landmarks": sum(m["type"] == "landmarks" for m in messages),  # the overlay the page draws
                "captions": len(captions), "words": " ".join(m["text"] for m in captions if m["kind"] == "final"),
                "telemetry": sum(m["type"] == "telemetry" for m in messages), "peers_left": len(served.server.peers)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(lossy_call(Path(sys.argv[1])))))
