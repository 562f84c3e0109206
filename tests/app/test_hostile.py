"""Hostile requests to `avcall serve`: every one gets a 4xx and none reaches a pipeline. Oversized and
malformed bodies on every route, bogus SDP, DNS rebinding (Host) and cross-site requests (Origin,
Sec-Fetch-Site), path traversal in the static route, malformed HTTP, a wrong token (compared in constant
time), and a data-channel flood (rate-limited: the call goes on)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientSession

from avcall.app import pages, serve
from avcall.app.call_channel import CONTROL_BURST, CONTROL_RATE
from avcall.app.pages import MAX_BODY
from avcall.app.serve import ServeConfig
from tests.app.test_serve import Served

pytestmark = pytest.mark.usefixtures("ice_address")

ROUTES = [("GET", "/"), ("GET", "/static/client.js"), ("POST", "/offer")]
MEDIA = ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
         "a=rtpmap:111 opus/48000/2\r\n")
HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
BOGUS_SDP = {
    "not SDP": "hello",
    "no media": "v=0\r\nbogus",
    "garbled media line": HEAD + "m=audio x\r\n",
    "50 media sections": HEAD + MEDIA * 50,
    "two audio sections": HEAD + MEDIA + MEDIA.replace("mid:0", "mid:1"),
    "unknown media kind": HEAD + MEDIA.replace("m=audio", "m=text"),
    "no ICE or DTLS": HEAD + MEDIA,
    "binary junk": "v=0\r\n" + "\x00\xff\x7f" * 1000,
}


async def raw(url: str, request: bytes) -> int:
    """The status of one request sent byte for byte (no client library tidying it up)."""
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
    except ConnectionError:  # the server answered and closed before the whole body was sent
        pass
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(line.split()[1])


def request(method: str, path: str, *, host: str = "127.0.0.1", headers: dict | None = None,
            body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(data: bytes, size: int = 16 * 1024) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.fixture
def builds(monkeypatch) -> list:
    """Every pipeline the server builds for a peer."""
    built = []
    original = serve.Peer.build

    def build(peer):
        built.append(peer.id)
        return original(peer)

    monkeypatch.setattr(serve.Peer, "build", build)
    return built


def test_every_hostile_request_gets_a_4xx_and_reaches_no_pipeline(builds):
    async def run():
        got = {}
        async with Served(ServeConfig()) as served:
            url, port = served.url, served.url.rsplit(":", 1)[1]
            host = f"127.0.0.1:{port}"
            big = b"x" * (MAX_BODY + 1)
            for method, path in ROUTES:
                got[f"{method} {path}: oversized body"] = await raw(url, request(method, path, host=host, body=big))
                got[f"{method} {path}: oversized, chunked"] = await raw(url, request(
                    method, path, host=host, headers={"Transfer-Encoding": "chunked"}, body=chunked(big)))
                got[f"{method} {path}: other host (DNS rebinding)"] = await raw(url, request(
                    method, path, host=f"rebound.example:{port}"))
                for origin in ("http://evil.example", "null", f"https://{host}", f"http://{host}.evil.example"):
                    got[f"{method} {path}: Origin {origin}"] = await raw(url, request(
                        method, path, host=host, headers={"Origin": origin}))
                got[f"{method} {path}: Sec-Fetch-Site cross-site"] = await raw(url, request(
                    method, path, host=host, headers={"Sec-Fetch-Site": "cross-site"}))
            for method, path in ROUTES[:2]:
                got[f"{method} {path}: a body where none belongs"] = await raw(url, request(
                    method, path, host=host, body=b'{"a": 1}'))
            bodies = {
                "not JSON": b"{nope", "a JSON list": b"[1, 2]", "nested 100000 deep": b"[" * 100_000,
                "not UTF-8": b'{"sdp": "\xff\xfe"}', "a 5000-digit number": b'{"sdp": ' + b"9" * 5000 + b"}",
                "sdp not a string": b'{"type": "offer", "sdp": 7}', "empty": b"",
                "bad enhance mode": json.dumps({"type": "offer", "sdp": HEAD + MEDIA, "enhance": ["x"]}).encode(),
            }
            for name, body in bodies.items():
                got[f"POST /offer: {name}"] = await raw(url, request(
                    "POST", "/offer", host=host, headers={"Content-Type": "application/json"}, body=body))
            for name, sdp in BOGUS_SDP.items():
                body = json.dumps({"type": "offer", "sdp": sdp}).encode()
                got[f"POST /offer: bogus SDP, {name}"] = await raw(url, request(
                    "POST", "/offer", host=host, headers={"Content-Type": "application/json"}, body=body))
            for path in ("/static/..%2F..%2Fserve.py", "/static/%2e%2e%2f%2e%2e%2fserve.py", "/static/../serve.py",
                         "/static/..%5C..%5Cserve.py", "/static//etc/passwd", "/static/client.js%00.py",
                         "/static/client.js/../../serve.py", "/../../../etc/passwd", "/static/%252e%252e%252fcli.py",
                         "/static/index.html", "/static/", "/serve.py"):
                got[f"GET {path}: path traversal / not a static file"] = await raw(url, request("GET", path, host=host))
            got["PUT /offer: wrong method"] = await raw(url, request("PUT", "/offer", host=host, body=b"{}"))
            got["DELETE /: wrong method"] = await raw(url, request("DELETE", "/", host=host))
            got["GET /: a header line of 20 kB"] = await raw(url, request("GET", "/", host=host,
                                                                         headers={"X-Junk": "x" * 20_000}))
            got["malformed request line"] = await raw(url, b"GET\x00/ HTTP/9.9\r\n\r\n")
            got["GET /static/client.js: a script tag on another site"] = await raw(url, request(
                "GET", "/static/client.js", host=host, headers={"Sec-Fetch-Site": "cross-site",
                                                                "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"}))
            link = await raw(url, request("GET", "/", host=host, headers={  # a link to the page: it opens
                "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}))
            peers = len(served.server.peers)
        return got, peers, link

    got, peers, link = asyncio.run(run())
    assert link == 200
    refused = {name: status for name, status in got.items() if not 400 <= status < 500}
    assert not refused, refused
    assert got["POST /offer: oversized body"] == 413 and got["POST /offer: oversized, chunked"] == 413
    assert got["GET /: oversized body"] == 413
    assert all(status == 403 for name, status in got.items() if "Origin" in name or "rebinding" in name
               or "Sec-Fetch" in name)
    assert all(status == 400 for name, status in got.items() if "bogus SDP" in name)
    assert all(status == 404 for name, status in got.items() if "traversal" in name)
    assert builds == [] and peers == 0  # nothing reached a pipeline


def test_the_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = pages.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(pages.hmac, "compare_digest", spy)

    async def run():
        async with Served(ServeConfig(token="s3cret")) as served:
            async with ClientSession() as s:
                wrong = await s.post(f"{served.url}/offer", json={"type": "offer", "sdp": "v=0", "token": "s3cres"})
                none = await s.post(f"{served.url}/offer", json={"type": "offer", "sdp": "v=0"})
                header = await s.post(f"{served.url}/offer", json={"type": "offer", "sdp": "v=0"},
                                      headers={"X-Avcall-Token": "s3cret"})
                return wrong.status, none.status, header.status

    assert asyncio.run(run()) == (403, 403, 400)  # the right token (here in the header) gets past to the SDP
    assert compared == [(b"s3cres", b"s3cret"), (b"", b"s3cret"), (b"s3cret", b"s3cret")]


async def open_peer(url: str):
    """A peer with a data channel "avcall" and an audio transceiver: (pc, channel, messages received)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    channel = pc.createDataChannel("avcall")
    messages, opened = [], asyncio.Event()
    channel.on("message", lambda m: messages.append(json.loads(m)))
    channel.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    async with ClientSession() as session:
        reply = await session.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"})
        answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await asyncio.wait_for(opened.wait(), 15)
    return pc, channel, messages


def test_a_data_channel_flood_is_rate_limited_and_the_call_goes_on():
    flood = 3000

    async def run():
        async with Served(ServeConfig(captions=False)) as served:
            pc, channel, messages = await open_peer(served.url)
            (peer,) = served.server.peers.values()
            began = asyncio.get_running_loop().time()
            for i in range(flood):
                channel.send(json.dumps({"type": "control", "overlay": bool(i % 2), "enhance": "dtln"}))
            while channel.bufferedAmount:  # until SCTP has sent them all
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            elapsed = asyncio.get_running_loop().time() - began
            dropped = peer.line.messages_dropped
            await asyncio.sleep(1.0)  # the bucket refills: the page's next toggle is heard
            channel.send(json.dumps({"type": "control", "enhance": "off"}))
            await asyncio.sleep(1.0)
            result = (dropped, elapsed, peer.line.state["enhance"], peer.id in served.server.peers, list(messages))
            await pc.close()
            return result

    dropped, elapsed, mode, alive, messages = asyncio.run(run())
    assert dropped >= flood - (CONTROL_BURST + CONTROL_RATE * elapsed)  # at most the rate got through
    assert alive and mode == "off"  # the call went on, and its controls work again after the flood
    assert any(m["type"] == "status" and "too many" in m["text"] for m in messages)
    assert any(m["type"] == "telemetry" and m["messages_dropped"] >= dropped for m in messages)
