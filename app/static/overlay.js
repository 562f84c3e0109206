// The lip tracking, drawn by the page: the call sends the tracked face's landmarks on its data channel
// ({"type": "landmarks", pts, rtp, size, face, points, lines, thumb?}: pipelines/stages/landmarks.py), not a
// video with them drawn in. The page keeps the last second of its camera's frames, each stamped with its capture
// time (requestVideoFrameCallback's captureTime), and draws on the canvas the newest frame whose landmarks have
// come, with them: the frame the call saw, the points it found in it.
// Lining up: a frame's RTP timestamp (90 kHz) is its capture time plus a constant of the sender's. The page finds
// that constant from the messages that carry a thumbnail of their frame (16x12 luma blocks), each a vote for
// the local frames that look like it (`lineUp`).
// Then each frame is paired with the landmarks whose RTP time is its capture time (within PAIR_MS). A frame whose
// landmarks have not come in time (a little longer than the latest took) is drawn without them (the server
// dropped it); the picture is as late as the landmarks are. With the overlay off,
// each frame as it comes. The same on the served page and the room page; `state` is what the tests read.
'use strict';

window.avcallOverlay = function (video, canvas) {
  const KEEP_FRAMES = 45;  // about 1.5 s of the camera (at most 640 pixels wide)
  const KEEP_MARKS = 90;
  // the call's landmarks come 50-300 ms after the frame (more on a loaded server): a frame waits for its own a
  // little longer than the latest ones took, then it is drawn without them
  const WAIT_MS = [300, 1400];
  const PAIR_MS = 15;  // a frame and the landmarks of its capture time (25-30 fps: 33-40 ms apart)
  const TW = 16, TH = 12;  // the thumbnail's blocks, as the server's
  const LIP = '#ff3c3c';
  const MESH = 'rgba(220, 220, 220, 0.7)';
  const g = canvas.getContext('2d');
  const small = document.createElement('canvas');
  small.width = TW * 4;
  small.height = TH * 4;
  const sg = small.getContext('2d', { willReadFrequently: true });
  const frames = [];  // {capture (ms, the page's clock), bitmap, width, height, thumb}
  const marks = [];   // the landmark messages, decoded, in arrival order
  const votes = new Map(); // capture time - RTP time (ms), in 2 ms bins: {w, ow} (weight, weighted offset)
  let offset = null;
  const lags = [];  // how late the latest landmarks came (ms after their frame's capture)
  const state = {
    on: true, drawn: 0, paired: 0, unpaired: 0, received: 0, offset_ms: null, lag_ms: null,
    last: null,      // the last frame drawn with landmarks: {capture_ms, frame_capture_ms, pts, size, lips, at}
    history: [],     // the same for the last 200 frames drawn with landmarks
    snapshot,        // the last frame drawn with landmarks, the picture alone (a data URL) and its lips
  };
  let shown = -Infinity;  // capture time of the frame on the canvas
  let plain = null;       // that frame, for snapshot()

  function decode(text) {
    const bin = atob(text || '');
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function points(text) {
    const bytes = decode(text);
    const q = new Int16Array(bytes.buffer, 0, bytes.length >> 1);  // little-endian, as every browser's CPU
    const xy = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) xy[i] = q[i] / 4;  // quarter pixels
    return xy;
  }

  function centred(values) {
    let mean = 0;
    for (const v of values) mean += v;
    mean /= values.length;
    return Float32Array.from(values, (v) => v - mean);
  }

  // the frame's luma in TW x TH block means, as the server's thumbnail
  function thumbnail(bitmap) {
    sg.imageSmoothingEnabled = true;
    sg.imageSmoothingQuality = 'high';
    sg.drawImage(bitmap, 0, 0, small.width, small.height);
    const px = sg.getImageData(0, 0, small.width, small.height).data;
    const out = new Float32Array(TW * TH);
    for (let y = 0; y < small.height; y++) {
      for (let x = 0; x < small.width; x++) {
        const i = 4 * (y * small.width + x);
        out[(y >> 2) * TW + (x >> 2)] += (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]) / 16;
      }
    }
    return centred(out);
  }

  // a message with a thumbnail votes for the offsets that would pair it with each local frame, the more the
  // more alike they are (frames alike a median one get nothing); the votes of the last few seconds add up
  // (a wrong offset pairs frames a frame apart, alike but less so than the same frame, and it wanders with the
  // camera's jitter where the right one stays put to the millisecond)
  function lineUp(rtp, thumb) {
    if (frames.length < 5) return;
    const ds = frames.map((f) => {
      let d = 0;
      for (let i = 0; i < thumb.length; i++) d += Math.abs(f.thumb[i] - thumb[i]);
      return d;
    });
    const median = [...ds].sort((a, b) => a - b)[ds.length >> 1];
    for (const [bin, v] of votes) {
      v.w *= 0.95;
      v.ow *= 0.95;
      if (v.w < 0.01) votes.delete(bin);
    }
    frames.forEach((f, i) => {
      const w = Math.max(0, 1 - ds[i] / (median || 1)) ** 2;
      if (w <= 0) return;
      const o = f.capture - rtp / 90;
      const v = votes.get(Math.round(o / 2)) || { w: 0, ow: 0 };
      v.w += w;
      v.ow += w * o;
      votes.set(Math.round(o / 2), v);
    });
    let best = null;
    let most = 0;
    for (const [bin, v] of votes) {
      let w = v.w;
      let ow = v.ow;
      for (const near of [votes.get(bin - 1), votes.get(bin + 1)]) if (near) { w += near.w; ow += near.ow; }
      if (w > most) { most = w; best = ow / w; }
    }
    offset = most > 1 ? best : null;
    state.offset_ms = offset;
  }

  function onLandmarks(msg) {
    state.received += 1;
    if (typeof msg.rtp !== 'number') return;
    if (msg.thumb) lineUp(msg.rtp, centred(decode(msg.thumb)));
    if (offset !== null) {  // capture to here
      state.lag_ms = performance.now() - (msg.rtp / 90 + offset);
      lags.push(state.lag_ms);
      while (lags.length > 50) lags.shift();
    }
    marks.push({ rtp: msg.rtp, pts: msg.pts, size: msg.size || [0, 0], face: !!msg.face,
                 xy: points(msg.points), lines: Array.isArray(msg.lines) ? msg.lines : [] });
    while (marks.length > KEEP_MARKS) marks.shift();
  }

  function onFrame(now, meta) {
    video.requestVideoFrameCallback(onFrame);
    if (!video.srcObject || !meta.width) return;
    const capture = meta.captureTime ?? meta.presentationTime ?? now;
    const scale = Math.min(1, 640 / meta.width);
    createImageBitmap(video, { resizeWidth: Math.round(meta.width * scale),
                               resizeHeight: Math.round(meta.height * scale) }).then((bitmap) => {
      frames.push({ capture, bitmap, width: bitmap.width, height: bitmap.height, thumb: thumbnail(bitmap) });
      while (frames.length > KEEP_FRAMES) {
        const old = frames.shift();
        if (old !== plain) old.bitmap.close();
      }
    }).catch(() => { /* the video went away */ });
  }

  function pair(capture) {
    if (offset === null) return null;
    let best = null;
    for (const m of marks) {
      const d = Math.abs(m.rtp / 90 + offset - capture);
      if (d <= PAIR_MS && (!best || d < best.d)) best = { m, d };
    }
    return best && best.m;
  }

  function draw(frame, m) {
    if (canvas.width !== frame.width || canvas.height !== frame.height) {
      canvas.width = frame.width;
      canvas.height = frame.height;
    }
    g.drawImage(frame.bitmap, 0, 0);
    if (plain && !frames.includes(plain)) plain.bitmap.close();  // left the ring while it was shown
    plain = frame;
    shown = frame.capture;
    state.drawn += 1;
    if (!m) { state.unpaired += 1; return; }
    state.paired += 1;
    if (!m.face) {
      g.fillStyle = '#ffc800';
      g.font = '12px sans-serif';
      g.fillText('no face', 8, 18);
      return;
    }
    const sx = canvas.width / (m.size[0] || canvas.width);
    const sy = canvas.height / (m.size[1] || canvas.height);
    let at = 0;
    m.lines.forEach(([count, closed], i) => {
      g.strokeStyle = i < 2 ? LIP : MESH;  // the outer and inner lips first
      g.lineWidth = 1;
      g.beginPath();
      for (let k = 0; k < count; k++) {
        const x = m.xy[2 * (at + k)] * sx;
        const y = m.xy[2 * (at + k) + 1] * sy;
        if (k === 0) g.moveTo(x, y); else g.lineTo(x, y);
      }
      if (closed) g.closePath();
      g.stroke();
      at += count;
    });
    const lips = [];
    for (let k = 0; k < 40 && 2 * k + 1 < m.xy.length; k++) lips.push([m.xy[2 * k] * sx, m.xy[2 * k + 1] * sy]);
    state.last = { capture_ms: m.rtp / 90 + offset, frame_capture_ms: frame.capture, pts: m.pts, size: m.size,
                   lips, at: performance.now() };
    state.history.push(state.last);
    while (state.history.length > 200) state.history.shift();
  }

  function render() {
    requestAnimationFrame(render);
    const now = performance.now();
    const wait = Math.min(WAIT_MS[1], Math.max(WAIT_MS[0], 100 + Math.max(0, ...lags)));
    for (let i = frames.length - 1; i >= 0; i--) {
      const f = frames[i];
      if (f.capture <= shown) return;  // nothing newer to show
      if (!state.on) { draw(f, null); return; }
      const m = pair(f.capture);
      if (m || now - f.capture > wait) { draw(f, m); return; }
    }
  }

  // the last frame drawn with landmarks, without them (a PNG data URL), and the lips drawn on it
  function snapshot() {
    if (!plain || !state.last || plain.capture !== state.last.frame_capture_ms) return null;
    const c = document.createElement('canvas');
    c.width = plain.width;
    c.height = plain.height;
    c.getContext('2d').drawImage(plain.bitmap, 0, 0);
    return { ...state.last, image: c.toDataURL('image/png') };
  }

  function setOn(on) {
    state.on = on;
  }

  // another sender (a new worker after a failover): its RTP clock has another constant
  function reset() {
    marks.length = 0;
    votes.clear();
    lags.length = 0;
    offset = state.offset_ms = null;
  }

  function clear() {
    for (const f of frames.splice(0)) f.bitmap.close();
    reset();
    shown = -Infinity;
    plain = null;
    g.clearRect(0, 0, canvas.width, canvas.height);
  }

  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) video.requestVideoFrameCallback(onFrame);
  requestAnimationFrame(render);
  return { state, onLandmarks, setOn, reset, clear };
};
