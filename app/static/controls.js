// The call's controls, the same on the served page and the room page (app/call_channel.py reads them): the
// noise suppressor (a select: "off" or a suppressor's name), the lip tracking drawn, "Only my voice" (the lip
// gate), what is sent instead of the camera, and the mood reading (an opt-in). Each change goes to the call as
// {"type": "control", ...} through `send`; telemetry from the call greys out what it does not have and, where it
// runs something else than the page asks (a new worker after a failover starts with the defaults), the page's
// choice is sent again, at most every 2 s.
'use strict';

window.avcallControls = function (send, hooks = {}) {
  const $ = (id) => document.getElementById(id);
  const el = { enhance: $('enhance'), overlay: $('overlay'), lipGate: $('lip-gate'), avatar: $('avatar'),
               emotion: $('emotion') };
  const why = { lipGate: 'the lip gate needs the camera', avatar: 'no talking-face weights on this server',
                emotion: 'no emotion weights on this server' };
  let resent = 0;

  // what the page asks the call for, in the call's words
  function wanted() {
    return { enhance: el.enhance.value, overlay: el.overlay.checked, lip_gate: el.lipGate.checked,
             avatar: el.avatar.value, emotion: el.emotion.checked };
  }

  function disable(key) {
    if (el[key].disabled) return;
    el[key].disabled = true;
    el[key].parentElement.title = why[key];
  }

  // the call's telemetry: what it lacks is greyed out, what it runs otherwise is asked for again
  function reflect(msg) {
    if (msg.lip_gate === 'unavailable') disable('lipGate');
    if (msg.avatar === 'unavailable') disable('avatar');
    if (msg.emotion === 'unavailable') {
      disable('emotion');
      if (el.emotion.checked) { el.emotion.checked = false; if (hooks.emotion) hooks.emotion(false); }
    }
    const want = wanted();
    const has = { enhance: msg.enhance, overlay: msg.overlay, lip_gate: msg.lip_gate === 'unavailable' ? want.lip_gate
                  : msg.lip_gate !== 'off', avatar: msg.avatar === 'unavailable' ? want.avatar : msg.avatar,
                  emotion: msg.emotion === 'unavailable' ? want.emotion : msg.emotion === 'on' };
    const differ = Object.keys(want).filter((k) => has[k] !== undefined && has[k] !== want[k]);
    if (differ.length && Date.now() - resent > 2000) {
      resent = Date.now();
      send(Object.fromEntries(differ.map((k) => [k, want[k]])));
    }
  }

  el.enhance.addEventListener('change', () => send({ enhance: el.enhance.value }));
  el.overlay.addEventListener('change', () => {
    send({ overlay: el.overlay.checked });
    if (hooks.overlay) hooks.overlay(el.overlay.checked);  // the page draws it: shown or not at once
  });
  el.lipGate.addEventListener('change', () => send({ lip_gate: el.lipGate.checked }));
  el.avatar.addEventListener('change', () => send({ avatar: el.avatar.value }));
  el.emotion.addEventListener('change', () => {
    send({ emotion: el.emotion.checked });
    if (hooks.emotion) hooks.emotion(el.emotion.checked);
  });
  el.emotion.checked = false;  // an explicit opt-in every time: never a state the browser restored
  return { wanted, reflect };
};
