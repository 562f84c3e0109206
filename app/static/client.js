// avcall serve: browser side. Sends camera + mic to the local server over
// WebRTC, plays back the enhanced voice, draws the lip tracking the server sends
// (landmarks, static/overlay.js) over the camera, shows captions and telemetry,
// the talking face when picked, and, when the user opts in, the mood the server
// reads from face and voice.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  const token = query.get('token') || hash.get('token') || null;
  const MAX_FINAL_LINES = 6;
  const MOOD_WINDOW_S = 60;  // the timeline's span
  // the class colours of the server's emotion.png (pipelines/sinks/emotion.py)
  const MOOD_COLOURS = {
    neutral: '#9e9e9e', happy: '#f4b400', sad: '#4285f4', angry: '#db4437',
    fearful: '#8e44ad', disgust: '#0f9d58', surprise: '#ff7f0e',
  };

  const el = {
    start: $('start'), stop: $('stop'), local: $('local'), remote: $('remote'), view: $('view'),
    status: $('status'),
    captions: $('captions'), partial: $('partial'), language: $('caption-language'), latency: $('latency'),
    meterIn: $('meter-in'), meterOut: $('meter-out'),
    meterInText: $('meter-in-text'), meterOutText: $('meter-out-text'),
    face: $('face'), gate: $('gate'), serverInfo: $('server-info'),
    mood: $('mood'), moodLeading: $('mood-leading'),
    moodConfidence: $('mood-confidence'), moodConfidenceText: $('mood-confidence-text'),
    moodValence: $('mood-valence'), moodArousal: $('mood-arousal'), moodTimeline: $('mood-timeline'),
  };

  let pc = null;
  let dc = null;
  let localStream = null;
  let lastFinal = null;      // {line, div} of the most recent final caption
  let partialLine = null;    // line number of the partial currently shown
  const rec = { ctx: null, nodes: [], chunks: [], rate: null };

  const api = {
    captions: [],
    telemetry: null,
    // what the mood panel shows: on (the user's opt-in), the readings of the last 60 s ({t: seconds on the
    // page's clock, probs, valence, arousal, leading, confidence, sources}), the latest one
    emotion: { on: false, readings: [], latest: null },
    state: 'idle',
    peer: null,
    start,
    stop,
    takeRecording,
  };
  window.avcall = api;
  // the lip tracking: the call's landmarks drawn over the camera frames it saw (static/overlay.js)
  const overlay = window.avcallOverlay(el.local, el.view);
  api.overlay = overlay.state;
  const controls = window.avcallControls(sendControl, { emotion: setEmotion, overlay: overlay.setOn });
  overlay.setOn(controls.wanted().overlay);

  function setStatus(text, isError = false) {
    el.status.textContent = text;
    el.status.classList.toggle('error', isError);
  }

  function intParam(name, fallback) {
    const v = parseInt(query.get(name), 10);
    return Number.isFinite(v) && v > 0 ? v : fallback;
  }

  // aiortc does not do trickle ICE: wait until all candidates are in the SDP.
  function waitIceComplete(conn) {
    if (conn.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (conn.iceGatheringState === 'complete') {
          conn.removeEventListener('icegatheringstatechange', check);
          resolve();
        }
      };
      conn.addEventListener('icegatheringstatechange', check);
    });
  }

  async function start() {
    if (pc) return;  // already running
    el.start.disabled = true;
    el.stop.disabled = false;
    setStatus('connecting…');
    api.state = 'connecting';
    try {
      localStream = await navigator.mediaDevices.getUserMedia({
        video: { width: intParam('w', 320), height: intParam('h', 240) },
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      teardown(`camera/microphone unavailable: ${err.name}: ${err.message}`, true);
      return;
    }
    el.local.srcObject = localStream;

    const stun = query.get('stun');  // never a STUN server unless asked for
    pc = new RTCPeerConnection({ iceServers: stun ? [{ urls: stun }] : [] });
    const conn = pc;
    conn.onconnectionstatechange = () => {
      if (pc !== conn) return;  // stale event from a closed connection
      api.state = conn.connectionState;
      if (conn.connectionState === 'connected') setStatus('connected');
      else if (conn.connectionState === 'failed') setStatus('connection failed', true);
      else if (conn.connectionState === 'disconnected') setStatus('disconnected');
    };
    conn.ontrack = onTrack;
    for (const track of localStream.getTracks()) {
      conn.addTransceiver(track, { direction: 'sendrecv', streams: [localStream] });
    }
    // The channel must exist before the offer so it is negotiated in the SDP.
    dc = conn.createDataChannel('avcall', { ordered: true });
    dc.onmessage = (ev) => onMessage(ev.data);
    dc.onopen = () => {
      const { avatar, emotion } = controls.wanted();  // the offer carried the rest
      if (emotion) sendControl({ emotion });
      if (avatar !== 'off') sendControl({ avatar });
      showMood();
    };

    let resp;
    try {
      await conn.setLocalDescription(await conn.createOffer());
      await waitIceComplete(conn);
      if (pc !== conn) return;  // stopped while gathering
      const headers = { 'Content-Type': 'application/json' };
      if (token) headers['X-Avcall-Token'] = token;
      resp = await fetch('/offer', {
        method: 'POST',
        headers,
        body: JSON.stringify({
          sdp: conn.localDescription.sdp,
          type: 'offer',
          token,
          enhance: controls.wanted().enhance,
          overlay: controls.wanted().overlay,
          lip_gate: controls.wanted().lip_gate,
        }),
      });
    } catch (err) {
      if (pc === conn) teardown(`could not reach the server: ${err.message}`, true);
      return;
    }
    if (pc !== conn) return;

    let body = null;
    try { body = await resp.json(); } catch (_) { /* non-JSON body */ }
    if (pc !== conn) return;
    if (resp.status !== 200 || !body || !body.sdp) {
      const reason = (body && body.error) || `HTTP ${resp.status} ${resp.statusText}`;
      teardown(`error: ${reason}`, true);
      return;
    }
    api.peer = body.peer ?? null;
    try {
      await conn.setRemoteDescription({ sdp: body.sdp, type: body.type || 'answer' });
    } catch (err) {
      if (pc === conn) teardown(`bad answer from server: ${err.message}`, true);
    }
  }

  function onTrack(ev) {
    // aiortc sends msids, but build a stream ourselves if it did not.
    let stream = ev.streams[0];
    if (!stream) {
      stream = el.remote.srcObject instanceof MediaStream ? el.remote.srcObject : new MediaStream();
      stream.addTrack(ev.track);
    }
    if (el.remote.srcObject !== stream) el.remote.srcObject = stream;
    el.remote.play().catch(() => { /* autoplay refused; user can press play */ });
    if (ev.track.kind === 'audio' && query.get('record') === '1') startRecorder(stream);
  }

  // Records the received audio for tests. Chromium only delivers remote
  // WebRTC audio to Web Audio while the stream is also attached to a media
  // element, which #remote is.
  function startRecorder(stream) {
    stopRecorder();
    const ctx = new AudioContext();
    ctx.resume().catch(() => {});
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(4096, 1, 1);
    const mute = ctx.createGain();
    mute.gain.value = 0;  // the processor only runs when connected to the destination
    proc.onaudioprocess = (e) => {
      rec.chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    };
    source.connect(proc);
    proc.connect(mute);
    mute.connect(ctx.destination);
    rec.ctx = ctx;
    rec.rate = ctx.sampleRate;
    rec.chunks = [];
    rec.nodes = [source, proc, mute];  // keep references so nothing is GC'd
  }

  function stopRecorder() {
    if (!rec.ctx) return;
    for (const node of rec.nodes) node.disconnect();
    rec.nodes[1].onaudioprocess = null;
    rec.ctx.close().catch(() => {});
    rec.ctx = null;
    rec.nodes = [];
  }

  function takeRecording() {
    const total = rec.chunks.reduce((n, c) => n + c.length, 0);
    const all = new Float32Array(total);
    let off = 0;
    for (const c of rec.chunks) { all.set(c, off); off += c.length; }
    return { rate: rec.rate, samples: Array.from(all) };
  }

  // Closes everything; the recording stays available to takeRecording().
  function teardown(statusText, isError = false) {
    stopRecorder();
    if (dc) { try { dc.close(); } catch (_) { /* already closed */ } }
    if (pc) pc.close();
    if (localStream) localStream.getTracks().forEach((t) => t.stop());
    dc = null;
    pc = null;
    localStream = null;
    clearMood();
    overlay.clear();
    el.local.srcObject = null;
    el.remote.srcObject = null;
    api.state = 'closed';
    el.start.disabled = false;
    el.stop.disabled = true;
    setStatus(statusText, isError);
  }

  function stop() {
    teardown('stopped');
  }

  function sendControl(msg) {
    if (dc && dc.readyState === 'open') dc.send(JSON.stringify({ type: 'control', ...msg }));
  }

  function onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'caption') onCaption(msg);
    else if (msg.type === 'telemetry') onTelemetry(msg);
    else if (msg.type === 'status') setStatus(String(msg.text ?? ''));
    else if (msg.type === 'emotion') onEmotion(msg);
    else if (msg.type === 'landmarks') overlay.onLandmarks(msg);
  }

  function onCaption(msg) {
    api.captions.push(msg);
    const text = String(msg.text ?? '');
    if (msg.kind === 'partial') {
      el.partial.textContent = text;
      partialLine = msg.line;
      return;
    }
    if (msg.kind !== 'final') return;
    // the recogniser's language (detected on the first line under --language auto) in the captions' header
    if (msg.language) el.language.textContent = ` (${String(msg.language)})`;
    if (lastFinal && lastFinal.line === msg.line) {
      lastFinal.div.textContent += (lastFinal.div.textContent ? ' ' : '') + text;
    } else {
      const div = document.createElement('div');
      div.className = 'final';
      div.textContent = text;
      el.captions.insertBefore(div, el.partial);
      lastFinal = { line: msg.line, div };
      const finals = el.captions.querySelectorAll('.final');
      for (let i = 0; i < finals.length - MAX_FINAL_LINES; i++) finals[i].remove();
    }
    if (partialLine === null || partialLine === undefined || partialLine === msg.line) {
      el.partial.textContent = '';
      partialLine = null;
    }
  }

  const fmt = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(1) : '–');
  const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);

  // --- the mood panel: shown only while the user has opted in and the call is up -------------------
  function setEmotion(on) {
    api.emotion.on = on;
    if (!on) clearMood();
    showMood();
  }

  function showMood() {
    el.mood.hidden = !(api.emotion.on && dc && dc.readyState === 'open');
  }

  function clearMood() {
    api.emotion.readings = [];
    api.emotion.latest = null;
    el.moodLeading.textContent = 'waiting…';
    el.moodConfidence.value = 0;
    el.moodConfidenceText.textContent = '–';
    el.moodValence.textContent = '–';
    el.moodArousal.textContent = '–';
    drawTimeline();
    showMood();
  }

  function onEmotion(msg) {
    if (!api.emotion.on) return;  // one still in flight when the user switched it off
    const t = performance.now() / 1000;
    const reading = {
      t, probs: msg.probs || {}, valence: num(msg.valence), arousal: num(msg.arousal),
      leading: String(msg.leading ?? ''), confidence: num(msg.confidence),
      sources: Array.isArray(msg.sources) ? msg.sources : [],
    };
    const readings = api.emotion.readings;
    readings.push(reading);
    while (readings.length && readings[0].t < t - MOOD_WINDOW_S) readings.shift();
    api.emotion.latest = reading;
    el.moodLeading.textContent = reading.leading + (reading.sources.length ? '' : ' (held: no face, no voice)');
    el.moodLeading.style.color = MOOD_COLOURS[reading.leading] || '';
    el.moodConfidence.value = reading.confidence;
    el.moodConfidenceText.textContent = `${Math.round(100 * reading.confidence)}%`;
    el.moodValence.textContent = reading.valence.toFixed(2);
    el.moodArousal.textContent = reading.arousal.toFixed(2);
    drawTimeline();
  }

  // The last 60 s: the leading emotion as coloured bars (height: confidence) over valence and arousal lines.
  function drawTimeline() {
    const canvas = el.moodTimeline;
    const g = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    const top = h * 0.5;  // bars above, lines below
    g.clearRect(0, 0, w, h);
    g.fillStyle = '#fff';
    g.fillRect(0, 0, w, h);
    const readings = api.emotion.readings;
    if (!readings.length) return;
    const end = readings[readings.length - 1].t;
    const x = (t) => w - ((end - t) / MOOD_WINDOW_S) * w;
    const barW = Math.max(1, w / (MOOD_WINDOW_S * 4));
    for (const r of readings) {
      g.fillStyle = MOOD_COLOURS[r.leading] || '#999';
      const bh = (top - 4) * Math.max(0, Math.min(1, r.confidence));
      g.fillRect(x(r.t) - barW, top - bh, barW, bh);
    }
    const mid = top + (h - top) / 2;
    g.strokeStyle = '#ddd';
    g.beginPath(); g.moveTo(0, mid); g.lineTo(w, mid); g.stroke();
    for (const [key, colour] of [['valence', '#0f9d58'], ['arousal', '#db4437']]) {
      g.strokeStyle = colour;
      g.beginPath();
      readings.forEach((r, i) => {
        const y = mid - (Math.max(-1, Math.min(1, r[key])) * (h - top - 4)) / 2;
        if (i === 0) g.moveTo(x(r.t), y); else g.lineTo(x(r.t), y);
      });
      g.stroke();
    }
  }

  function setMeter(meter, label, db) {
    const ok = typeof db === 'number' && Number.isFinite(db);
    meter.value = ok ? Math.max(-60, Math.min(0, db)) : -60;
    label.textContent = `${ok ? db.toFixed(1) : '–'} dB`;
  }

  function onTelemetry(msg) {
    api.telemetry = msg;
    const tbody = el.latency.tBodies[0];
    const rows = [];
    const row = (cells) => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.appendChild(td);
      }
      rows.push(tr);
    };
    for (const [stage, s] of Object.entries(msg.stages || {})) {
      row([stage, fmt(s && s.p50_ms), fmt(s && s.p95_ms)]);
    }
    row(['added audio delay', fmt(msg.audio_delay_ms), '']);
    tbody.replaceChildren(...rows);

    const levels = msg.levels || {};
    setMeter(el.meterIn, el.meterInText, levels.in_db);
    setMeter(el.meterOut, el.meterOutText, levels.out_db);
    el.face.textContent = `face: ${msg.face ? 'yes' : 'no'}`;
    el.face.className = msg.face ? 'yes' : 'no';
    // the lip gate: "holding" while another voice is kept out of your voice and captions
    const gate = msg.lip_gate ?? 'unavailable';
    el.gate.textContent = gate === 'holding' ? `only my voice: holding another voice back (${msg.lip_gate_reason})`
      : gate === 'open' ? `only my voice: open (${msg.lip_gate_reason ?? 'lips'})` : `only my voice: ${gate}`;
    el.gate.className = gate === 'holding' ? 'holding' : '';
    el.serverInfo.textContent =
      `server: enhance ${msg.enhance ?? '–'}, overlay ${msg.overlay ? 'on' : 'off'}, peers ${msg.peers ?? '–'}` +
      (msg.avatar_codec_bytes_per_frame != null ? `, face motion ${msg.avatar_codec_bytes_per_frame} B/frame` : '');
    controls.reflect(msg);
    showing(msg.avatar);
  }

  // the talking face comes as video; otherwise the call sends landmarks, drawn over the camera
  function showing(avatar) {
    const face = avatar === 'voice' || avatar === 'reenact';
    el.remote.hidden = !face;
    el.view.hidden = face;
  }

  el.start.addEventListener('click', () => { start(); });
  el.stop.addEventListener('click', () => { stop(); });

  if (!window.isSecureContext || !navigator.mediaDevices) {
    setStatus('camera needs a secure context: open the page via http://localhost or https', true);
  }
  if (query.get('autostart') === '1') start();
})();
