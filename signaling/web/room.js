// The room page of edge-sfu: join form, participant tiles, call controls and chat.
// `/?room=kitchen&name=ana&autojoin=1` joins without a click. The client object is `window.edgeSfu`.
// `&token=...` (an invite link from `edge-sfu token`) is sent with the join; its name and
// permissions decide the name field and which controls work (the server enforces them).
// Media options in the URL: `&video=WxH` picks the camera capture size (default 1280x720),
// `&simulcast=0` sends the camera as one layer instead of three, `&svc=L3T3_KEY` as one scalable
// (SVC) encoding for a VP9 or AV1 room, `&mic=0` / `&camera=0` join without
// the microphone / camera (the join form's boxes start unticked).

import {
  EdgeSfuClient, MAX_CHAT_LENGTH, rtcConfigFromUrl, scalabilityModeFromUrl, simulcastFromUrl, tokenClaims, tokenPermissions,
  videoCodecsFromUrl,
} from '/edge-sfu.js';

const $ = (sel) => document.querySelector(sel);

/**
 * Camera capture settings: 720p by default, sent as three simulcast layers (320x180, 640x360,
 * 1280x720) of which the SFU forwards each viewer the one that fits its tile; `?video=WxH` asks for
 * another size.
 */
const CAMERA_CONSTRAINTS = (() => {
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(new URLSearchParams(location.search).get('video') ?? '');
  const [width, height] = m ? [Number(m[1]), Number(m[2])] : [1280, 720];
  return { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
})();

const ICONS = {
  mic: '<path d="M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z"/><path d="M19 11a7 7 0 0 1-14 0M12 18v3"/>',
  micOff: '<path d="M15 9.3V6a3 3 0 0 0-5.7-1.3M9 9v3a3 3 0 0 0 5 2.2"/><path d="M19 11a7 7 0 0 1-1.1 3.7M5 11a7 7 0 0 0 11.6 5.3M12 18v3M3 3l18 18"/>',
  camera: '<rect x="2.5" y="6" width="13" height="12" rx="2"/><path d="M15.5 10.5 21.5 7v10l-6-3.5"/>',
  cameraOff: '<path d="M9 6h4.5a2 2 0 0 1 2 2v3.5l6-4.5v10M15.5 16v0a2 2 0 0 1-2 2h-9a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2"/><path d="M3 3l18 18"/>',
  screen: '<rect x="2.5" y="4" width="19" height="13" rx="2"/><path d="M8 21h8M12 17v4M12 13.5V7.5M9.5 10 12 7.5l2.5 2.5"/>',
  chat: '<path d="M21 12a8 8 0 0 1-11.6 7.1L3 21l1.9-6.1A8 8 0 1 1 21 12z"/>',
  stats: '<path d="M4 20V13M9.5 20V8M15 20v-5M20.5 20V4M2.5 20h19"/>',
  record: '<circle cx="12" cy="12" r="8"/><circle cx="12" cy="12" r="3.5" fill="currentColor"/>',
  leave: '<path d="M3.6 14.6c5-5 11.8-5 16.8 0l-2.1 2.6-3.2-1.3v-2.4a9.6 9.6 0 0 0-6.2 0v2.4l-3.2 1.3z"/>',
};

function icon(name) {
  return `<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name]}</svg>`;
}

function setControl(button, iconName, text, { state, pressed } = {}) {
  button.innerHTML = `${icon(iconName)}<span class="control-label">${text}</span>`;
  button.title = text;
  if (state) button.dataset.state = state;
  if (pressed !== undefined) button.setAttribute('aria-pressed', String(pressed));
}

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return s.toUpperCase();
}

/** Stable hue per name so avatars are told apart at a glance. */
function hue(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

// ------------------------------------------------------------------ page state

const params = new URLSearchParams(location.search);
/** The room token of an invite link, its claims (unverified, for the UI) and what it allows. */
const token = params.get('token') || null;
const claims = tokenClaims(token);
const allowed = tokenPermissions(claims);
/** The name the server will give this member: the token's, whatever the form says. */
const tokenName = [claims?.name, claims?.sub].find((n) => typeof n === 'string' && n.trim()) ?? null;

/** What the page says when the server refuses a join, by error code. */
const JOIN_REFUSALS = {
  room_full: 'This room is full.',
  invalid_join: 'Room and name must be 1 to 64 characters.',
  auth_required: 'This room needs an invite link with a token. Ask whoever runs it for one.',
  token_expired: 'Your invite link has expired. Ask for a new one.',
  token_not_yet_valid: 'Your invite link is not valid yet. Check this device\'s clock, or try again later.',
  bad_token: 'Your invite link is not valid. Check that it was copied completely.',
  wrong_room: 'Your invite link is for another room.',
  join_rate_limited: 'Too many attempts to join. Wait a few seconds and try again.',
};
const ui = {
  joinView: $('#join-view'),
  roomView: $('#room-view'),
  leftView: $('#left-view'),
  tiles: $('#tiles'),
  audioSink: $('#audio-sink'),
  chat: $('#chat'),
  chatLog: $('#chat-log'),
  chatInput: $('#chat-input'),
  status: $('#status'),
  roomTitle: $('#room-title'),
  mic: $('#mic'),
  camera: $('#camera'),
  screen: $('#screen'),
  chatToggle: $('#chat-toggle'),
  statsToggle: $('#stats-toggle'),
  leave: $('#leave'),
  record: $('#record'),
  recordingBadge: $('#recording'),
  enableAudio: $('#enable-audio'),
};

/** @type {EdgeSfuClient|null} */
let client = null;
let localStream = null; // microphone + camera
let screenStream = null;
let lastJoin = null;
let unread = 0;
/** The member the server says speaks now (its camera tile is highlighted). */
let speakerId = null;
/** The timer asking for `mediaStats` every second while the Stats button is on. */
let statsTimer = null;

function setStatus(text, kind = '') {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function show(view) {
  ui.joinView.hidden = view !== 'join';
  ui.roomView.hidden = view !== 'room';
  ui.leftView.hidden = view !== 'left';
  document.body.dataset.view = view;
}

// ------------------------------------------------------------------ tiles

function tileKey(peerId, source) {
  return `${peerId}:${source}`;
}

function findTile(peerId, source) {
  return ui.tiles.querySelector(`.tile[data-peer-id="${CSS.escape(String(peerId))}"][data-source="${source}"]`);
}

function ensureTile(peerId, source, name, local = false) {
  let tile = findTile(peerId, source);
  if (tile) return tile;
  tile = document.createElement('div');
  tile.className = 'tile no-video';
  tile.dataset.peerId = String(peerId);
  tile.dataset.source = source;
  tile.dataset.local = String(local);
  tile.dataset.key = tileKey(peerId, source);
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound plays through the separate <audio> elements
  video.setAttribute('playsinline', '');
  if (local && source === 'camera') video.classList.add('mirror');
  video.addEventListener('resize', () => updateVideoState(tile));
  video.addEventListener('loadeddata', () => updateVideoState(tile));
  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  avatar.style.setProperty('--hue', hue(name));
  avatar.textContent = initials(name);
  const label = document.createElement('div');
  label.className = 'label';
  const mutedIcon = document.createElement('span');
  mutedIcon.className = 'mic-muted';
  mutedIcon.innerHTML = icon('micOff');
  mutedIcon.title = 'Microphone off';
  const nameEl = document.createElement('span');
  nameEl.className = 'name';
  nameEl.textContent = source === 'screen' ? `${name}'s screen` : local ? `${name} (you)` : name;
  label.append(mutedIcon, nameEl);
  tile.append(video, avatar, label);
  if (source === 'screen') tile.classList.add('screen');
  tile.classList.toggle('speaking', source === 'camera' && speakerId != null && String(peerId) === String(speakerId));
  ui.tiles.append(tile);
  layout();
  return tile;
}

/** Highlights the camera tile of the member who speaks now (own tile included), and no other. */
function renderSpeaker() {
  for (const tile of ui.tiles.querySelectorAll('.tile')) {
    tile.classList.toggle('speaking', tile.dataset.source === 'camera' && speakerId != null && tile.dataset.peerId === String(speakerId));
  }
}

function updateVideoState(tile) {
  const video = tile.querySelector('video');
  const hasTrack = !!video.srcObject && video.srcObject.getVideoTracks().some((t) => t.readyState === 'live');
  const off = !hasTrack || tile.dataset.videoMuted === 'true';
  tile.classList.toggle('no-video', off);
}

function setTileVideo(tile, stream) {
  const video = tile.querySelector('video');
  if (video.srcObject !== stream) video.srcObject = stream;
  if (stream) video.play().catch(() => {});
  updateVideoState(tile);
}

function setTileMicMuted(peerId, muted) {
  const tile = findTile(peerId, 'camera');
  if (tile) tile.classList.toggle('mic-off', muted);
}

function removeTile(peerId, source) {
  const tile = findTile(peerId, source);
  if (tile) {
    const v = tile.querySelector('video');
    if (v) v.srcObject = null;
    tile.remove();
    layout();
  }
}

function removePeerUi(peerId) {
  for (const tile of ui.tiles.querySelectorAll(`.tile[data-peer-id="${CSS.escape(String(peerId))}"]`)) {
    const v = tile.querySelector('video');
    if (v) v.srcObject = null;
    tile.remove();
  }
  for (const a of ui.audioSink.querySelectorAll(`audio[data-peer-id="${CSS.escape(String(peerId))}"]`)) {
    a.srcObject = null;
    a.remove();
  }
  layout();
}

function clearTiles() {
  speakerId = null;
  for (const v of ui.tiles.querySelectorAll('video')) v.srcObject = null;
  ui.tiles.replaceChildren();
  for (const a of ui.audioSink.querySelectorAll('audio')) a.srcObject = null;
  ui.audioSink.replaceChildren();
}

/** Picks a column count that keeps tiles as large as possible for the stage size. */
function layout() {
  const tiles = ui.tiles.children.length;
  const screens = ui.tiles.querySelectorAll('.tile.screen').length;
  ui.tiles.dataset.count = String(tiles);
  ui.tiles.classList.toggle('has-screen', screens > 0);
  const people = tiles - screens;
  const stage = ui.tiles.getBoundingClientRect();
  const gap = 12;
  const w = Math.max(stage.width, 1);
  const h = Math.max(screens > 0 ? stage.height * 0.3 : stage.height, 1);
  const sizes = [];
  for (let cols = 1; cols <= Math.max(people, 1); cols++) {
    const rows = Math.ceil(Math.max(people, 1) / cols);
    const tw = (w - gap * (cols - 1)) / cols;
    const th = (h - gap * (rows - 1)) / rows;
    sizes.push({ cols, tileW: Math.min(tw, (th * 16) / 9) });
  }
  // The largest tiles win; among near-equals (within 12%) the wider arrangement reads better.
  const largest = Math.max(...sizes.map((x) => x.tileW));
  const best = sizes.filter((x) => x.tileW >= largest * 0.88).pop();
  ui.tiles.style.setProperty('--cols', String(best.cols));
  ui.tiles.style.setProperty('--tile-w', `${Math.floor(best.tileW)}px`);
}
window.addEventListener('resize', layout);

function addAudio(rt) {
  const a = document.createElement('audio');
  a.autoplay = true;
  a.dataset.peerId = String(rt.peerId);
  a.dataset.trackId = rt.trackId;
  a.dataset.source = rt.source;
  a.srcObject = rt.stream;
  ui.audioSink.append(a);
  a.play().catch(() => {
    ui.enableAudio.hidden = false;
  });
}

ui.enableAudio.addEventListener('click', () => {
  for (const a of ui.audioSink.querySelectorAll('audio')) a.play().catch(() => {});
  ui.enableAudio.hidden = true;
});

// ------------------------------------------------------------------ chat

function addChatLine({ from, name, text, self = false, system = false }) {
  const li = document.createElement('li');
  li.className = `chat-line${self ? ' self' : ''}${system ? ' system' : ''}`;
  if (from != null) li.dataset.from = String(from);
  const time = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (system) {
    li.textContent = text;
  } else {
    const head = document.createElement('div');
    head.className = 'chat-meta';
    const who = document.createElement('span');
    who.className = 'chat-name';
    who.textContent = self ? 'You' : name;
    const when = document.createElement('time');
    when.textContent = time;
    head.append(who, when);
    const body = document.createElement('div');
    body.className = 'chat-text';
    body.textContent = text;
    li.append(head, body);
  }
  ui.chatLog.append(li);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  if (!self && !system && !chatVisible()) {
    unread++;
    renderChatToggle();
  }
}

function chatVisible() {
  return !ui.roomView.classList.contains('chat-hidden') && getComputedStyle(ui.chat).display !== 'none';
}

function renderChatToggle() {
  const open = !ui.roomView.classList.contains('chat-hidden');
  setControl(ui.chatToggle, 'chat', unread > 0 ? `Chat (${unread})` : 'Chat', { pressed: open });
  ui.chatToggle.classList.toggle('unread', unread > 0);
}

function setChatOpen(open) {
  ui.roomView.classList.toggle('chat-hidden', !open);
  ui.roomView.classList.toggle('chat-open', open);
  if (open) {
    unread = 0;
    ui.chatInput.focus({ preventScroll: true });
  }
  renderChatToggle();
  layout();
}

$('#chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || !client || client.state !== 'joined') return;
  try {
    client.sendChat(text.slice(0, MAX_CHAT_LENGTH));
  } catch (err) {
    addChatLine({ text: `Not sent: ${err.message}`, system: true });
    return;
  }
  addChatLine({ from: client.peerId, name: client.name, text, self: true });
  ui.chatInput.value = '';
});
ui.chatToggle.addEventListener('click', () => setChatOpen(ui.roomView.classList.contains('chat-hidden')));
$('#chat-close').addEventListener('click', () => setChatOpen(false));

// ------------------------------------------------------------------ media stats

function kbps(bps) {
  return `${Math.round((bps ?? 0) / 1000)} kbit/s`;
}

function resolution(w, h) {
  return w && h ? `${w}×${h}` : '–';
}

/** What the SFU forwards into one received video tile: layer (and the one it switches to), size, rate. */
function receivingLines(leg) {
  let layer = leg.layer != null ? `L${leg.layer}` : leg.bitrateBps > 0 ? 'L–' : 'paused';
  if (leg.targetLayer != null && leg.targetLayer !== leg.layer) layer += ` → L${leg.targetLayer}`;
  return [`${layer}  ${resolution(leg.width, leg.height)}`, kbps(leg.bitrateBps)];
}

/** What the SFU receives of one of our own tracks: each layer's size and rate, or that it is off. */
function publishingLines(pub) {
  return pub.layers.map((l, i) => {
    const name = l.rid ?? `L${i}`;
    return l.active ? `${name}  ${resolution(l.width, l.height)}  ${kbps(l.bitrateBps)}` : `${name}  off`;
  });
}

function setOverlay(tile, lines, dataset = {}) {
  let el = tile.querySelector('.stats-overlay');
  if (!lines) {
    el?.remove();
    return;
  }
  if (!el) {
    el = document.createElement('div');
    el.className = 'stats-overlay';
    el.setAttribute('aria-label', 'Media statistics');
    tile.append(el);
  }
  el.textContent = lines.join('\n');
  for (const [k, v] of Object.entries(dataset)) {
    if (v == null) delete el.dataset[k];
    else el.dataset[k] = String(v);
  }
}

/** Puts the SFU's counters on the tiles: received layer, size and rate on remote video, our layers on our own. */
function renderStats(stats) {
  if (!client || !statsTimer) return;
  const legs = new Map((stats.receiving ?? []).map((l) => [l.trackId, l]));
  const pubs = new Map((stats.publishing ?? []).map((p) => [p.trackId, p]));
  for (const tile of ui.tiles.querySelectorAll('.tile')) {
    if (tile.dataset.local === 'true') {
      const pub = pubs.get(client.localTrackId(tile.dataset.source));
      const lines = pub ? publishingLines(pub) : [];
      if (tile.dataset.source === 'camera' && stats.estimateBps != null) lines.unshift(`↓ est. ${kbps(stats.estimateBps)}`);
      setOverlay(tile, lines.length ? lines : null);
    } else {
      const leg = tile.dataset.trackId ? legs.get(tile.dataset.trackId) : null;
      setOverlay(tile, leg ? receivingLines(leg) : null, { layer: leg?.layer, width: leg?.width, height: leg?.height });
    }
  }
}

function askStats() {
  if (client && client.state === 'joined') client.requestStats({ timeout: 3000 }).catch(() => {});
}

function renderStatsToggle() {
  const on = !!statsTimer;
  setControl(ui.statsToggle, 'stats', 'Stats', { pressed: on });
  ui.statsToggle.classList.toggle('active', on);
}

/** The Stats button: while on, `getStats` goes out every second and each answer is drawn on the tiles. */
function setStatsOn(on) {
  clearInterval(statsTimer);
  statsTimer = null;
  if (on && client && client.state === 'joined') {
    statsTimer = setInterval(askStats, 1000);
    askStats();
  } else {
    for (const el of ui.tiles.querySelectorAll('.stats-overlay')) el.remove();
  }
  renderStatsToggle();
}

ui.statsToggle.addEventListener('click', () => setStatsOn(!statsTimer));

// ------------------------------------------------------------------ local media

async function getLocalMedia({ audio, video }) {
  const attempts = [];
  if (audio && video) attempts.push({ audio: true, video: CAMERA_CONSTRAINTS });
  if (audio) attempts.push({ audio: true });
  if (video) attempts.push({ video: CAMERA_CONSTRAINTS });
  let lastErr = null;
  for (const c of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      lastErr = err;
    }
  }
  if (lastErr) console.warn('edge-sfu: no local media', lastErr);
  return new MediaStream();
}

/** Disables a control the member's token does not allow, with the reason as its tooltip. */
function forbid(button, reason) {
  button.disabled = true;
  button.dataset.forbidden = 'true';
  button.title = reason;
}

function renderMic() {
  const published = !!client?.localTrack('mic');
  const muted = !published || client.isMuted('mic');
  setControl(ui.mic, muted ? 'micOff' : 'mic', muted ? 'Unmute' : 'Mute', { state: muted ? 'off' : 'on', pressed: muted });
  if (client) setTileMicMuted(client.peerId, muted);
}

function renderCamera() {
  const published = !!client?.localTrack('camera');
  const off = !published || client.isMuted('camera');
  setControl(ui.camera, off ? 'cameraOff' : 'camera', off ? 'Start video' : 'Stop video', { state: off ? 'off' : 'on', pressed: off });
}

function renderScreen() {
  const on = !!screenStream;
  setControl(ui.screen, 'screen', on ? 'Stop sharing' : 'Share screen', { state: on ? 'on' : 'off', pressed: on });
  ui.screen.classList.toggle('active', on);
}

function renderControls() {
  renderMic();
  renderCamera();
  renderScreen();
  renderChatToggle();
  renderStatsToggle();
  setControl(ui.leave, 'leave', 'Leave');
  if (!allowed.publish) {
    for (const b of [ui.mic, ui.camera, ui.screen]) forbid(b, 'Your invite does not allow sending audio or video');
  }
  if (!allowed.chat) {
    ui.chatInput.disabled = true;
    $('#chat-send').disabled = true;
    ui.chatInput.placeholder = 'Chat is off for you';
  }
}

ui.mic.addEventListener('click', async () => {
  if (!client || client.state !== 'joined' || !allowed.publish) return;
  if (!client.localTrack('mic')) {
    const s = await getLocalMedia({ audio: true });
    const t = s.getAudioTracks()[0];
    if (!t) return setStatus('No microphone available', 'warn');
    localStream.addTrack(t);
    client.publish(t, 'mic', { stream: localStream });
  } else {
    client.setMuted('mic', !client.isMuted('mic'));
  }
  renderMic();
});

ui.camera.addEventListener('click', async () => {
  if (!client || client.state !== 'joined' || !allowed.publish) return;
  const tile = findTile(client.peerId, 'camera');
  const current = client.localTrack('camera');
  if (current && !client.isMuted('camera')) {
    // Camera off: tell the SFU, then release the device (its light goes off).
    client.setMuted('camera', true);
    current.stop();
    localStream.removeTrack(current);
    await client.replaceTrack('camera', null).catch(() => {});
    if (tile) {
      tile.dataset.videoMuted = 'true';
      updateVideoState(tile);
    }
  } else {
    ui.camera.disabled = true;
    try {
      const s = await getLocalMedia({ video: true });
      const t = s.getVideoTracks()[0];
      if (!t) {
        setStatus('No camera available', 'warn');
        return;
      }
      for (const old of localStream.getVideoTracks()) localStream.removeTrack(old);
      localStream.addTrack(t);
      if (current) {
        await client.replaceTrack('camera', t);
        client.setMuted('camera', false);
      } else {
        client.publish(t, 'camera', { stream: localStream });
      }
      if (tile) {
        tile.dataset.videoMuted = 'false';
        setTileVideo(tile, new MediaStream([t]));
      }
    } finally {
      ui.camera.disabled = false;
    }
  }
  renderCamera();
});

async function startScreenShare() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 30 } }, audio: true });
  } catch (err) {
    if (err.name !== 'NotAllowedError') setStatus(`Screen sharing failed: ${err.message}`, 'warn');
    return;
  }
  if (!client || client.state !== 'joined') {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  screenStream = stream;
  const video = stream.getVideoTracks()[0];
  const audio = stream.getAudioTracks()[0];
  client.publish(video, 'screen', { stream });
  if (audio) client.publish(audio, 'screenAudio', { stream });
  video.addEventListener('ended', () => stopScreenShare());
  const tile = ensureTile(client.peerId, 'screen', client.name, true);
  setTileVideo(tile, new MediaStream([video]));
  renderScreen();
}

function stopScreenShare() {
  if (!screenStream) return;
  const s = screenStream;
  screenStream = null;
  if (client && client.state === 'joined') {
    client.unpublish('screen');
    client.unpublish('screenAudio');
  }
  for (const t of s.getTracks()) t.stop();
  if (client) removeTile(client.peerId, 'screen');
  renderScreen();
}

ui.screen.addEventListener('click', () => {
  if (!client || client.state !== 'joined' || !allowed.publish) return;
  if (screenStream) stopScreenShare();
  else startScreenShare();
});

ui.leave.addEventListener('click', () => {
  if (client) client.leave();
});

function stopLocalMedia() {
  for (const s of [localStream, screenStream]) if (s) for (const t of s.getTracks()) t.stop();
  localStream = null;
  screenStream = null;
}

// ------------------------------------------------------------------ joining

function peerName(peerId) {
  return client?.peers.get(peerId)?.name ?? `#${peerId}`;
}

function updateHeader() {
  if (!client || client.state !== 'joined') return;
  const n = client.peers.size + 1;
  ui.roomTitle.textContent = client.room;
  document.title = `${client.room} · edge-sfu`;
  const conn = client.pc?.connectionState;
  const media = conn === 'connected' ? '' : conn === 'failed' ? ' · media failed' : ' · connecting media…';
  setStatus(`${n} ${n === 1 ? 'participant' : 'participants'}${media}`, conn === 'failed' ? 'warn' : 'ok');
}

function peerMicMuted(peer) {
  const mics = [...peer.tracks.values()].filter((t) => t.source === 'mic');
  return mics.length === 0 || mics.every((t) => t.muted);
}

// ------------------------------------------------------------------ recording

/** Shows every member that the room is recorded; the record button only to those who may. */
function renderRecording() {
  const active = client?.state === 'joined' && client.recording.active;
  ui.recordingBadge.hidden = !active;
  ui.record.hidden = !(client?.state === 'joined' && client.mayRecord);
  setControl(ui.record, 'record', active ? 'Stop recording' : 'Record', {
    state: active ? 'on' : 'off',
    pressed: active,
  });
}

ui.record.addEventListener('click', () => {
  if (!client || client.state !== 'joined' || !client.mayRecord) return;
  client.setRecording(!client.recording.active);
});

function wireClient(c) {
  c.addEventListener('recording', ({ detail }) => {
    renderRecording();
    let text = detail.active ? 'Recording started: this room is being recorded' : 'Recording stopped';
    if (!detail.active && detail.error) text = `Recording stopped: ${detail.error}`;
    addChatLine({ text, system: true });
  });
  c.addEventListener('peerjoined', ({ detail: { peer } }) => {
    ensureTile(peer.id, 'camera', peer.name);
    setTileMicMuted(peer.id, peerMicMuted(peer));
    addChatLine({ text: `${peer.name} joined`, system: true });
    updateHeader();
  });
  c.addEventListener('peerleft', ({ detail: { peerId, peer } }) => {
    removePeerUi(peerId);
    addChatLine({ text: `${peer?.name ?? `#${peerId}`} left`, system: true });
    updateHeader();
  });
  c.addEventListener('track', ({ detail: rt }) => {
    if (rt.kind === 'audio') {
      addAudio(rt);
      return;
    }
    const source = rt.source === 'screen' ? 'screen' : 'camera';
    const tile = ensureTile(rt.peerId, source, peerName(rt.peerId));
    tile.dataset.trackId = rt.trackId;
    tile.dataset.videoMuted = String(rt.muted);
    setTileVideo(tile, rt.stream);
    // The SFU picks the simulcast layer from the size the video is drawn at.
    c.observeTile(rt.trackId, tile.querySelector('video'));
  });
  c.addEventListener('trackremoved', ({ detail: rt }) => {
    if (rt.kind === 'audio') {
      for (const a of ui.audioSink.querySelectorAll(`audio[data-track-id="${CSS.escape(rt.trackId)}"]`)) {
        a.srcObject = null;
        a.remove();
      }
      return;
    }
    if (rt.source === 'screen') {
      removeTile(rt.peerId, 'screen');
    } else {
      const tile = findTile(rt.peerId, 'camera');
      if (tile && tile.dataset.trackId === rt.trackId) {
        delete tile.dataset.trackId;
        setTileVideo(tile, null);
      }
    }
  });
  const refreshPeer = (peerId) => {
    const peer = c.peers.get(peerId);
    if (peer) setTileMicMuted(peerId, peerMicMuted(peer));
  };
  c.addEventListener('trackpublished', ({ detail: { peerId } }) => refreshPeer(peerId));
  c.addEventListener('trackunpublished', ({ detail: { peerId } }) => refreshPeer(peerId));
  c.addEventListener('trackmuted', ({ detail: { peerId, trackId, muted } }) => {
    refreshPeer(peerId);
    const rt = c.remoteTracks.get(trackId);
    if (rt && rt.kind === 'video') {
      const tile = findTile(peerId, rt.source === 'screen' ? 'screen' : 'camera');
      if (tile) {
        tile.dataset.videoMuted = String(muted);
        updateVideoState(tile);
      }
    }
  });
  c.addEventListener('forcemuted', ({ detail: { source, muted } }) => {
    if (source === 'mic') renderMic();
    if (source === 'camera') renderCamera();
    const what = source === 'mic' ? 'microphone' : source;
    addChatLine({
      text: muted ? `An administrator muted your ${what}; only they can unmute it.` : `An administrator unmuted your ${what}.`,
      system: true,
    });
  });
  c.addEventListener('activespeaker', ({ detail: { peerId } }) => {
    speakerId = peerId;
    renderSpeaker();
  });
  c.addEventListener('mediastats', ({ detail }) => renderStats(detail));
  c.addEventListener('chat', ({ detail }) => addChatLine(detail));
  c.addEventListener('connectionstatechange', updateHeader);
  // Invite links carry the token; the page has no way to mint a fresh one, so it says so in
  // time (a page embedded in a service that mints tokens calls c.refreshToken(token) here).
  c.addEventListener('tokenexpiring', ({ detail: { secondsLeft } }) => {
    addChatLine({
      text: `Your invite runs out in ${secondsLeft} s: ask for a new link to stay in the room.`,
      system: true,
    });
  });
  c.addEventListener('serverstopping', () => {
    addChatLine({ text: 'The server is stopping.', system: true });
  });
  // The node drains: the same page (room, name, token) on the node it names. Only http(s) URLs
  // are followed, whatever the message says.
  c.addEventListener('reconnect', ({ detail: { url } }) => {
    let next;
    try {
      next = new URL(location.pathname + location.search + location.hash, url);
    } catch {
      return;
    }
    if (next.protocol !== 'https:' && next.protocol !== 'http:') return;
    addChatLine({ text: `This server is going down for maintenance: moving to ${next.host}.`, system: true });
    location.assign(next.href);
  });
  c.addEventListener('error', ({ detail: err }) => {
    console.warn('edge-sfu error', err.code, err.message);
    if (c.state === 'joined') addChatLine({ text: `Error: ${err.message}`, system: true });
  });
  c.addEventListener('close', ({ detail }) => {
    if (client !== c) return;
    setStatsOn(false);
    stopLocalMedia();
    clearTiles();
    renderRecording();
    ui.enableAudio.hidden = true;
    $('#left-title').textContent = detail.left
      ? 'You left the room'
      : detail.removed ? 'You were removed from the room' : 'Disconnected';
    $('#left-detail').textContent = detail.left
      ? `You were in “${c.room}”.`
      : detail.removed
        ? `The server said: ${detail.reason}`
        : `The connection to the server ended${detail.reason ? ` (${detail.reason})` : ''}.`;
    setStatus('');
    ui.roomTitle.textContent = '';
    document.title = 'edge-sfu';
    if (ui.roomView.hidden === false) show('left');
  });
}

async function join(room, name, { mic = true, camera = true } = {}) {
  lastJoin = { room, name, mic, camera };
  // The server names the member after its token; show the same name here.
  name = tokenName ?? name;
  // Without the publish permission an offer with sending media would be refused: capture nothing.
  if (!allowed.publish) {
    mic = false;
    camera = false;
  }
  const err = $('#join-error');
  err.hidden = true;
  $('#join-button').disabled = true;
  setStatus('Starting camera and microphone…');
  try {
    localStream = mic || camera ? await getLocalMedia({ audio: mic, video: camera }) : new MediaStream();
    const c = new EdgeSfuClient({
      rtcConfig: rtcConfigFromUrl(),
      simulcast: simulcastFromUrl(),
      scalabilityMode: scalabilityModeFromUrl(),
      videoCodecs: videoCodecsFromUrl(),
      log: (...a) => console.debug('[edge-sfu]', ...a),
    });
    client = c;
    window.edgeSfu = c;
    wireClient(c);
    setStatus('Connecting…');
    const tracks = [];
    const a = localStream.getAudioTracks()[0];
    const v = localStream.getVideoTracks()[0];
    if (a) tracks.push({ track: a, source: 'mic', stream: localStream });
    if (v) tracks.push({ track: v, source: 'camera', stream: localStream });
    const joined = await c.join({ room, name, tracks, token });
    // In the room.
    clearTiles();
    ui.chatLog.replaceChildren();
    unread = 0;
    show('room');
    speakerId = c.activeSpeaker.peerId;
    const self = ensureTile(joined.peerId, 'camera', name, true);
    if (v) setTileVideo(self, new MediaStream([v]));
    for (const peer of joined.peers) {
      ensureTile(peer.id, 'camera', peer.name);
      setTileMicMuted(peer.id, peerMicMuted(peer));
    }
    const url = new URL(location.href);
    url.searchParams.set('room', room);
    url.searchParams.set('name', name);
    url.searchParams.delete('autojoin');
    history.replaceState(null, '', url);
    renderControls();
    renderRecording();
    if (c.recording.active) addChatLine({ text: 'This room is being recorded', system: true });
    updateHeader();
    setChatOpen(window.matchMedia('(min-width: 900px)').matches);
    layout();
  } catch (e) {
    stopLocalMedia();
    const msg = JOIN_REFUSALS[e.code] ?? e.message;
    err.textContent = `Could not join: ${msg}`;
    err.hidden = false;
    setStatus('');
    show('join');
  } finally {
    $('#join-button').disabled = false;
  }
}

$('#join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = $('#join-room').value.trim();
  const name = $('#join-name').value.trim();
  if (!room || !name) return;
  try { localStorage.setItem('edge-sfu-name', name); } catch { /* private mode */ }
  join(room, name, { mic: $('#join-mic').checked, camera: $('#join-camera').checked });
});

$('#rejoin').addEventListener('click', () => {
  if (lastJoin) join(lastJoin.room, lastJoin.name, lastJoin);
  else show('join');
});

window.addEventListener('pagehide', () => {
  if (client) client.leave();
});

// ------------------------------------------------------------------ start

{
  const room = params.get('room') ?? (typeof claims?.room === 'string' ? claims.room : '');
  let storedName = '';
  try { storedName = localStorage.getItem('edge-sfu-name') ?? ''; } catch { /* private mode */ }
  const name = tokenName ?? params.get('name') ?? storedName;
  $('#join-room').value = room;
  $('#join-name').value = name;
  if (tokenName) {
    // The invite decides the name; the field only shows it.
    $('#join-name').readOnly = true;
    $('#join-name').title = 'Your invite link sets your name';
  }
  const off = (v) => v != null && ['0', 'false', 'off', 'no'].includes(v.toLowerCase());
  if (off(params.get('mic'))) $('#join-mic').checked = false;
  if (off(params.get('camera'))) $('#join-camera').checked = false;
  if (!allowed.publish) {
    for (const id of ['#join-mic', '#join-camera']) {
      $(id).checked = false;
      $(id).disabled = true;
    }
  }
  renderControls();
  if (params.get('autojoin') === '1' && room && name) {
    show('room');
    join(room, name, { mic: $('#join-mic').checked, camera: $('#join-camera').checked });
  } else {
    show('join');
    (room ? $('#join-name') : $('#join-room')).focus();
  }
}
