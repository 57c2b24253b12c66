// "Share my screen to that device": the viewer shows a short ID and waits in room `share-<ID>`
// (capacity 2, publishes nothing); the sender types the ID and publishes its screen into that room.
//
// URL parameters: `?view=1` waits as a viewer (the default without `id`), `?view=1&id=ABC234` waits
// under that ID, `?id=ABC234` opens the sender form prefilled. The client object is `window.edgeSfu`.
// `&token=...`: a room token (servers with auth configured require one), sent with the join and
// kept in the link the viewer shows; a token for room `share-ABC234` makes ABC234 the viewer's ID.

import { EdgeSfuClient, rtcConfigFromUrl, tokenClaims } from '/edge-sfu.js';

/** Characters of a share ID: no 0/O, 1/I/L, so it is easy to read out and type. */
export const ID_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
/** Length of a share ID. */
export const ID_LENGTH = 6;

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const token = params.get('token') || null;
/** Join refusals that retrying cannot fix: the invite link is the problem. */
const TOKEN_REFUSALS = new Set(['auth_required', 'token_expired', 'token_not_yet_valid', 'bad_token', 'wrong_room']);

const ui = {
  recording: $('#recording'),
  waitView: $('#wait-view'),
  sendView: $('#send-view'),
  sendingView: $('#sending-view'),
  stage: $('#view-stage'),
  id: $('#share-id'),
  waitDetail: $('#wait-detail'),
  link: $('#share-link'),
  input: $('#share-input'),
  start: $('#share-start'),
  error: $('#share-error'),
  preview: $('#share-preview'),
  stop: $('#share-stop'),
  video: $('#share-video'),
  sound: $('#share-sound'),
  audioSink: $('#audio-sink'),
  status: $('#status'),
  sendingTitle: $('#sending-title'),
};

/** A fresh random share ID. */
function randomId() {
  const out = [];
  const buf = new Uint8Array(ID_LENGTH * 2);
  while (out.length < ID_LENGTH) {
    crypto.getRandomValues(buf);
    for (const b of buf) {
      // Rejection sampling keeps every character equally likely.
      if (b < 256 - (256 % ID_ALPHABET.length) && out.length < ID_LENGTH) out.push(ID_ALPHABET[b % ID_ALPHABET.length]);
    }
  }
  return out.join('');
}

/** Upper-cases a typed ID and drops spaces and dashes; returns null unless it is a valid ID. */
function normalizeId(text) {
  const s = String(text || '').toUpperCase().replace(/[\s-]/g, '');
  if (s.length !== ID_LENGTH) return null;
  for (const c of s) if (!ID_ALPHABET.includes(c)) return null;
  return s;
}

/** Shows the recording badge while `c`'s room is being recorded: every member is to see it. */
function showRecording(c) {
  const render = () => {
    ui.recording.hidden = !(client === c && c.state === 'joined' && c.recording?.active);
  };
  for (const type of ['joined', 'recording', 'close']) c.addEventListener(type, render);
}

function roomOf(id) {
  return `share-${id}`;
}

function setState(state) {
  document.body.dataset.state = state;
  ui.waitView.hidden = state !== 'waiting';
  ui.stage.hidden = state !== 'viewing';
  ui.sendView.hidden = state !== 'idle';
  ui.sendingView.hidden = state !== 'sending' && state !== 'connecting';
}

function setStatus(text, kind = '') {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

/** @type {EdgeSfuClient|null} */
let client = null;
let viewerId = null;
let retryTimer = null;
let screenStream = null;
/** Whether this page returns to waiting as a viewer after it stops sharing. */
const viewerHome = !(params.has('id') && params.get('view') !== '1');

// ------------------------------------------------------------------ viewer

function startViewer(id) {
  clearTimeout(retryTimer);
  viewerId = id;
  ui.id.textContent = id;
  const link = new URL('/share.html', location.href);
  link.searchParams.set('id', id);
  if (token) link.searchParams.set('token', token);
  ui.link.textContent = link.href;
  ui.waitDetail.textContent = 'Connecting…';
  setState('waiting');
  setStatus('');

  const c = new EdgeSfuClient({ rtcConfig: rtcConfigFromUrl(), log: (...a) => console.debug('[edge-sfu]', ...a) });
  client = c;
  window.edgeSfu = c;
  showRecording(c);
  c.addEventListener('error', ({ detail: err }) => console.warn('edge-sfu error', err.code, err.message));
  c.addEventListener('track', ({ detail: rt }) => {
    if (rt.kind === 'video') {
      ui.video.srcObject = rt.stream;
      ui.video.dataset.trackId = rt.trackId;
      ui.video.play().catch(() => {});
      setState('viewing');
      setStatus(`Showing ${c.peers.get(rt.peerId)?.name ?? 'a screen'}`, 'ok');
      // Tell the SFU how large the screen is drawn (a layer that fits, if it has several).
      c.observeTile(rt.trackId, ui.video);
    } else {
      const a = document.createElement('audio');
      a.autoplay = true;
      a.dataset.trackId = rt.trackId;
      a.srcObject = rt.stream;
      ui.audioSink.append(a);
      a.play().catch(() => { ui.sound.hidden = false; });
    }
  });
  c.addEventListener('trackremoved', ({ detail: rt }) => {
    if (rt.kind === 'video') {
      if (ui.video.dataset.trackId === rt.trackId) backToWaiting();
    } else {
      for (const a of ui.audioSink.querySelectorAll('audio')) if (a.dataset.trackId === rt.trackId) a.remove();
    }
  });
  c.addEventListener('peerjoined', ({ detail: { peer } }) => {
    ui.waitDetail.textContent = `${peer.name} is connecting…`;
  });
  c.addEventListener('peerleft', () => backToWaiting());
  c.addEventListener('close', ({ detail }) => {
    if (client !== c || c.peerId == null) return; // a failed join is handled by join()'s rejection
    backToWaiting();
    if (detail.left) return;
    // Lost the server (restart, network): come back under the same ID.
    ui.waitDetail.textContent = 'Connection lost, reconnecting…';
    retryTimer = setTimeout(() => { if (client === c) startViewer(id); }, 2000);
  });
  c.join({ room: roomOf(id), name: 'viewer', capacity: 2, token })
    .then(() => {
      if (client === c) ui.waitDetail.textContent = 'Waiting for a screen…';
    })
    .catch((err) => {
      if (client !== c) return;
      if (err.code === 'room_full') {
        // Someone else uses this ID right now: take another.
        startViewer(randomId());
      } else if (TOKEN_REFUSALS.has(err.code)) {
        ui.waitDetail.textContent = `Cannot wait for a screen: ${err.message}`;
        setStatus('Refused', 'warn');
      } else {
        ui.waitDetail.textContent = `Cannot reach the server (${err.message}), retrying…`;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => { if (client === c) startViewer(id); }, 3000);
      }
    });
}

function backToWaiting() {
  ui.video.srcObject = null;
  delete ui.video.dataset.trackId;
  for (const a of ui.audioSink.querySelectorAll('audio')) a.remove();
  ui.sound.hidden = true;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  if (document.body.dataset.state === 'viewing') {
    setState('waiting');
    ui.waitDetail.textContent = 'Waiting for a screen…';
    setStatus('');
  }
}

$('#share-fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else ui.stage.requestFullscreen().catch(() => {});
});
ui.sound.addEventListener('click', () => {
  for (const a of ui.audioSink.querySelectorAll('audio')) a.play().catch(() => {});
  ui.sound.hidden = true;
});

// ------------------------------------------------------------------ sender

function showSendError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function stopScreen() {
  if (screenStream) for (const t of screenStream.getTracks()) t.stop();
  screenStream = null;
  ui.preview.srcObject = null;
}

async function startSharing(rawId) {
  const id = normalizeId(rawId);
  if (!id) {
    setState('idle');
    ui.input.value = String(rawId || '').toUpperCase();
    showSendError(`Enter the ${ID_LENGTH}-character ID shown on the other device.`);
    ui.input.focus();
    return;
  }
  showSendError('');
  let stream;
  try {
    // Called from the click handler: getDisplayMedia needs the user's gesture.
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 30 } }, audio: true });
  } catch (err) {
    if (err.name !== 'NotAllowedError') {
      setState('idle');
      ui.input.value = id;
      showSendError(`Screen capture failed: ${err.message}`);
    }
    return;
  }
  // Leave our own waiting room first.
  if (client) {
    const old = client;
    client = null;
    old.leave();
  }
  clearTimeout(retryTimer);
  screenStream = stream;
  const video = stream.getVideoTracks()[0];
  const audio = stream.getAudioTracks()[0];
  ui.preview.srcObject = new MediaStream([video]);
  ui.sendingTitle.textContent = `Connecting to ${id}…`;
  setState('connecting');

  const c = new EdgeSfuClient({ rtcConfig: rtcConfigFromUrl(), log: (...a) => console.debug('[edge-sfu]', ...a) });
  client = c;
  window.edgeSfu = c;
  showRecording(c);
  c.addEventListener('error', ({ detail: err }) => console.warn('edge-sfu error', err.code, err.message));
  const tracks = [{ track: video, source: 'screen', stream }];
  if (audio) tracks.push({ track: audio, source: 'screenAudio', stream });
  video.addEventListener('ended', () => { if (client === c) stopSharing(); });
  c.addEventListener('peerleft', () => {
    if (client !== c) return;
    stopSharing('The other device disconnected.');
  });
  c.addEventListener('close', ({ detail }) => {
    // Before `joined` a refusal is reported by join() itself.
    if (client !== c || detail.left || c.peerId == null) return;
    stopSharing('The connection to the server ended.');
  });
  c.addEventListener('connectionstatechange', ({ detail: { state } }) => {
    if (client !== c) return;
    if (state === 'connected') setStatus(`Sharing to ${id}`, 'ok');
    else if (state === 'failed') setStatus('Media connection failed', 'warn');
  });
  try {
    const joined = await c.join({ room: roomOf(id), name: 'screen', capacity: 2, tracks, token });
    if (client !== c) return;
    if (joined.peers.length === 0) {
      stopSharing(`No device is waiting with the ID ${id}.`);
      return;
    }
    ui.sendingTitle.textContent = `Sharing your screen to ${id}`;
    setState('sending');
  } catch (err) {
    if (client !== c) return;
    stopSharing(err.code === 'room_full'
      ? `The device ${id} is already showing another screen.`
      : `Could not connect: ${err.message}`);
  }
  ui.input.value = id;
}

/** Ends sharing; `why` is shown when it was not the user's choice. */
function stopSharing(why = '') {
  const c = client;
  client = null;
  if (c) c.leave();
  stopScreen();
  setStatus('');
  if (why || !viewerHome) {
    setState('idle');
    showSendError(why);
  } else {
    startViewer(viewerId ?? randomId());
  }
}

ui.stop.addEventListener('click', () => stopSharing());

for (const form of document.querySelectorAll('[data-send-form]')) {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = form.querySelector('input');
    startSharing(input.value);
  });
}

$('#become-viewer').addEventListener('click', (ev) => {
  ev.preventDefault();
  showSendError('');
  startViewer(viewerId ?? randomId());
});

window.addEventListener('pagehide', () => {
  if (client) client.leave();
  stopScreen();
});

// ------------------------------------------------------------------ start

{
  const tokenRoom = tokenClaims(token)?.room;
  const fromToken = typeof tokenRoom === 'string' && tokenRoom.startsWith('share-') ? normalizeId(tokenRoom.slice(6)) : null;
  const given = normalizeId(params.get('id')) ?? fromToken;
  if (params.get('view') === '1' || !params.has('id')) {
    startViewer(given ?? randomId());
  } else {
    ui.input.value = given ?? String(params.get('id')).toUpperCase();
    setState('idle');
    ui.input.focus();
  }
}
