"""`avcall worker`: one call through a Janus VideoRoom (app/room_call.py), until the participant leaves."""

from __future__ import annotations

import asyncio
import json

from avcall.app.janus import DISPLAY_PREFIX, JanusError
from avcall.app.options import add_enhance_argument
from avcall.app.room_call import RoomCall, WorkerConfig, warm_up
from avcall.pipelines.errors import InputError


def cmd_worker(args) -> int:
    """`avcall worker --janus URL --room R --feed ID`: one call, until the participant leaves or Ctrl-C."""
    cfg = WorkerConfig(janus=args.janus, room=args.room, feed=args.feed, enhance=args.enhance,
                       captions=not args.no_captions, overlay=not args.no_overlay, lip_gate=args.lip_gate == "on")
    warm_up(cfg.enhance)
    print(f"avcall worker: subscribing to feed {cfg.feed} in room {cfg.room} at {cfg.janus}", flush=True)
    try:
        state = asyncio.run(RoomCall(cfg).run())
    except (JanusError, OSError) as err:  # no such room or feed, Janus down: one line, exit status 2
        raise InputError(f"janus at {cfg.janus}: {err}") from None
    print(json.dumps({"feed": state.feed, "publisher_id": state.publisher_id, "ended": state.ended}))
    return 0


def add_parser(commands) -> None:
    w = commands.add_parser("worker", help="process one participant of a Janus VideoRoom and publish the result",
                            description="Join a Janus VideoRoom over its HTTP API, subscribe to one participant's "
                            "feed, run the call on it (face tracking, the noise suppressor, captions, the lip "
                            "tracking drawn) and publish the result into the same room as the feed "
                            f"'{DISPLAY_PREFIX}<FEED>': the enhanced voice, the annotated video and a data "
                            "channel 'avcall' with captions and telemetry (JSON). Runs until the participant "
                            "leaves. `avcall cluster up` runs workers like this one under Ray, one per "
                            "participant.")
    w.add_argument("--janus", required=True, metavar="URL", help="Janus' HTTP API, e.g. http://127.0.0.1:8088/janus")
    w.add_argument("--room", type=int, required=True, help="the VideoRoom's number")
    w.add_argument("--feed", type=int, required=True, help="the participant's publisher id in the room")
    add_enhance_argument(w, "the noise suppressor the call starts with (the page switches it)")
    w.add_argument("--no-captions", action="store_true", help="no captions")
    w.add_argument("--no-overlay", action="store_true", help="send the video without the lip tracking drawn")
    w.add_argument("--lip-gate", choices=["on", "off"], default="on",
                   help="on (default): another voice is held back while the participant's lips are still; off")
