// The room mode: join the Janus VideoRoom through this server's /janus proxy (janus.js from Debian's
// libjs-janus-gateway), publish the camera and microphone, and follow the feed an avcall worker publishes
// for us ("avcall:<my id>"), a new one after a failover: its voice, its data channel (captions, telemetry, the
// landmarks of our face, drawn over our camera: static/overlay.js) and, while the talking face is on, its
// video. window.avroom is what the tests read.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || undefined;
  const room = Number(document.body.dataset.room);
  const $ = (id) => document.getElementById(id);
  const api = window.avroom = {state: "idle", myId: null, captions: [], telemetry: null, feeds: [], gone: [],
                               tracks: 0, errors: [], controls: []};
  let janus = null, pub = null, sub = null, privateId = null, following = null;

  function setState(text) { api.state = text; $("status").textContent = text; }
  function fail(where, err) {
    const text = `${where}: ${err && err.message ? err.message : JSON.stringify(err)}`;
    api.errors.push(text); setState("error: " + text);
  }
  // janus.js asks an adapter.js object only for the browser's name and version
  function browser() {
    const ua = navigator.userAgent, ff = ua.match(/Firefox\/(\d+)/), ch = ua.match(/Chrom(?:e|ium)\/(\d+)/);
    if (ff) return {browserDetails: {browser: "firefox", version: Number(ff[1])}};
    return {browserDetails: {browser: ch ? "chrome" : "safari", version: ch ? Number(ch[1]) : 605}};
  }

  function onData(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    if (msg.type === "caption") {
      api.captions.push({...msg, at: Date.now(), feed: following});
      if (msg.kind === "final") {
        const line = document.createElement("p"); line.textContent = msg.text;
        $("captions").insertBefore(line, $("partial")); $("partial").textContent = "";
        while ($("captions").children.length > 12) $("captions").removeChild($("captions").firstChild);
      } else { $("partial").textContent = msg.text || ""; }
    } else if (msg.type === "landmarks") {
      overlay.onLandmarks(msg);
    } else if (msg.type === "emotion") {
      $("mood").hidden = false;
      $("mood").textContent = `mood: ${msg.leading} (${Math.round(100 * (msg.confidence || 0))}%)`;
    } else if (msg.type === "telemetry") {
      api.telemetry = {...msg, at: Date.now(), feed: following};
      controls.reflect(msg);
      const face = msg.avatar === "voice" || msg.avatar === "reenact";  // the talking face comes as video
      $("remote").hidden = !face; $("view").hidden = face;
      $("telemetry").textContent = `worker pid ${msg.worker_pid} · audio delay in the worker ` +
        `${msg.audio_delay_ms == null ? "–" : Math.round(msg.audio_delay_ms) + " ms"} · face ${msg.face ? "yes" : "no"}` +
        ` · enhance ${msg.enhance} · lip tracking ${msg.overlay ? "on" : "off"}` +
        (msg.lip_gate === "holding" ? ` · only my voice: holding another voice back (${msg.lip_gate_reason})`
          : ` · only my voice: ${msg.lip_gate ?? "–"}`);
    }
  }

  function follow(list) {
    for (const p of list || []) {
      if (p.display === "avcall:" + api.myId && p.id !== following) subscribe(p.id);
    }
  }

  function subscribe(feed) {
    if (sub) { sub.detach(); sub = null; }
    following = feed;
    overlay.reset();  // another worker: its landmarks come with another RTP clock
    const stream = new MediaStream();
    janus.attach({
      plugin: "janus.plugin.videoroom",
      success: (handle) => {
        sub = handle;
        handle.send({message: {request: "join", room: room, ptype: "subscriber", streams: [{feed: feed}],
                               private_id: privateId}});
      },
      error: (err) => fail("subscribe", err),
      onmessage: (msg, jsep) => {
        if (!jsep || !sub) return;
        sub.createAnswer({
          jsep: jsep, tracks: [{type: "data"}],
          success: (answer) => sub.send({message: {request: "start", room: room}, jsep: answer}),
          error: (err) => fail("answer", err),
        });
      },
      onremotetrack: (track, mid, on) => {
        if (!on || following !== feed) return;
        stream.addTrack(track);
        api.tracks += 1;
        $("remote").srcObject = stream;
        api.feeds.push({feed: feed, kind: track.kind, at: Date.now()});
        $("worker").textContent = "feed " + feed;
        setState("processed feed");
      },
      ondata: onData,
    });
  }

  function start() {
    $("start").disabled = true; $("stop").disabled = false;
    setState("connecting");
    janus = new Janus({
      server: location.origin + "/janus", token: token, iceServers: [],
      success: () => janus.attach({
        plugin: "janus.plugin.videoroom",
        success: (handle) => {
          pub = handle;
          handle.send({message: {request: "join", room: room, ptype: "publisher", display: "participant"}});
        },
        error: (err) => fail("attach", err),
        onmessage: (msg, jsep) => {
          if (msg.videoroom === "joined") {
            api.myId = msg.id; privateId = msg.private_id;
            setState("joined: waiting for a worker");
            pub.createOffer({
              tracks: [{type: "audio", capture: true, recv: false}, {type: "video", capture: true, recv: false},
                       {type: "data"}],  // the toggles go to the worker on our feed's data channel
              success: (offer) => pub.send({message: {request: "publish"}, jsep: offer}),
              error: (err) => fail("offer", err),
            });
            follow(msg.publishers);
          } else if (msg.videoroom === "event") {
            follow(msg.publishers);
            const gone = msg.unpublished || msg.leaving || msg.kicked;
            if (gone && gone === following) {
              api.gone.push({feed: gone, at: Date.now()});
              setState("the worker went: waiting for the next one");
            }
          }
          if (jsep) pub.handleRemoteJsep({jsep: jsep});
        },
        onlocaltrack: (track, on) => {
          if (!on) return;
          const local = $("local");
          if (!local.srcObject) local.srcObject = new MediaStream();
          local.srcObject.addTrack(track);
        },
      }),
      error: (err) => fail("janus", err),
    });
  }

  // the worker reads {"type": "control", ...} on our feed's data channel, as `avcall serve` does on its own
  function control(values) {
    api.controls.push(values);
    if (pub) pub.data({text: JSON.stringify({type: "control", ...values}), error: (err) => fail("control", err)});
  }
  // the worker's landmarks drawn over our camera's frames it saw (static/overlay.js)
  const overlay = window.avcallOverlay($("local"), $("view"));
  api.overlay = overlay.state;
  const controls = window.avcallControls(control, {emotion: (on) => { if (!on) $("mood").hidden = true; },
                                                   overlay: overlay.setOn});
  overlay.setOn(controls.wanted().overlay);

  function stop() {
    if (janus) janus.destroy();
    janus = pub = sub = null; following = null;
    overlay.clear();
    $("start").disabled = false; $("stop").disabled = true;
    setState("left");
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  Janus.init({debug: false, dependencies: Janus.useDefaultDependencies({adapter: browser()}),
              callback: () => { if (params.get("autostart")) start(); }});
})();
