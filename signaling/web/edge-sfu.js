// edge-sfu browser client, signaling protocol v1 (see docs/protocol.md).
//
// A plain ES module with no dependencies and no build step. One `EdgeSfuClient` is one participant:
// one WebSocket to the SFU and one RTCPeerConnection carrying everything it sends and receives.
//
//   import { EdgeSfuClient } from '/edge-sfu.js';
//   const client = new EdgeSfuClient();
//   client.addEventListener('track', (e) => attach(e.detail));       // a remote track to show or play
//   client.addEventListener('peerleft', (e) => removeTiles(e.detail.peerId));
//   const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   await client.join({ room: 'kitchen', name: 'ana', tracks: [
//     { track: stream.getAudioTracks()[0], source: 'mic', stream },
//     { track: stream.getVideoTracks()[0], source: 'camera', stream },
//   ] });
//   // Show a received video and tell the SFU how large it is drawn (it picks the simulcast layer):
//   client.addEventListener('track', (e) => { if (e.detail.kind === 'video') client.observeTile(e.detail.trackId, videoEl); });

/** The signaling protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** How often a `ping` is sent on the WebSocket, in milliseconds (the SFU drops a connection after 30 s of silence). */
export const PING_INTERVAL_MS = 10_000;

/** Longest chat text the SFU accepts, in characters. */
export const MAX_CHAT_LENGTH = 2000;

/** Track sources the protocol knows, as used in `offer.tracks[].source` and `TrackInfo.source`. */
export const TRACK_SOURCES = Object.freeze(['mic', 'camera', 'screen', 'screenAudio', 'other']);

/** Label of the data channel that carries chat lines. */
export const CHAT_CHANNEL_LABEL = 'chat';

/**
 * The camera's simulcast layers, lowest first (the order of `sendEncodings` and of the offer's
 * `a=simulcast` line, which is also the order of `layerHint.active`): a quarter, half and full
 * resolution copy of the captured picture. The SFU forwards each viewer the one that fits its tile and
 * its bandwidth.
 */
export const CAMERA_SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

/** Bit rate cap of a camera sent as one layer (simulcast off, or declined by the SFU). */
export const CAMERA_SINGLE_LAYER_MAX_BITRATE = 1_500_000;

/** Bit rate cap of a camera sent as one scalable (SVC) encoding: every spatial layer together. */
export const CAMERA_SVC_MAX_BITRATE = 2_500_000;

/** How long the rendered size of a tile must stay still before a `tileSize` message goes out, in milliseconds. */
export const TILE_SIZE_DEBOUNCE_MS = 150;

/**
 * The WebSocket URL of the SFU serving the current page: `ws://<host>/ws`, or `wss://<host>/ws` when the
 * page was loaded over HTTPS.
 * @param {Location|URL} [loc] the page location (defaults to `globalThis.location`)
 * @returns {string}
 */
export function defaultSignalingUrl(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

/**
 * RTCPeerConnection settings a page takes from its own URL: `?iceTransportPolicy=relay` makes the
 * browser use TURN relays only (to test a TURN set-up from a network where direct paths work).
 * @param {Location|URL} [loc] the page location (defaults to `globalThis.location`)
 * @returns {RTCConfiguration}
 */
export function rtcConfigFromUrl(loc = globalThis.location) {
  const policy = new URLSearchParams(loc.search).get('iceTransportPolicy');
  return policy === 'relay' ? { iceTransportPolicy: 'relay' } : {};
}

/**
 * Whether a page publishes its camera with simulcast, from its own URL: `?simulcast=0` (or `false`,
 * `off`) sends one layer; anything else, or no parameter, sends three.
 * @param {Location|URL} [loc] the page location (defaults to `globalThis.location`)
 * @returns {boolean}
 */
export function simulcastFromUrl(loc = globalThis.location) {
  const v = new URLSearchParams(loc.search).get('simulcast');
  return !(v != null && ['0', 'false', 'off', 'no'].includes(v.toLowerCase()));
}

/**
 * The scalability mode a page publishes its camera with, from its own URL: `?svc=L3T3_KEY` sends one
 * VP9 or AV1 encoding with three spatial and three temporal layers (the SFU forwards each viewer the
 * layers it takes), `?svc=L1T3` temporal layers only; no parameter: `null` (simulcast or one layer).
 * Only the `L<n>T<n>` and `L<n>T<n>_KEY` forms are taken.
 * @param {Location|URL} [loc] the page location (defaults to `globalThis.location`)
 * @returns {string|null}
 */
export function scalabilityModeFromUrl(loc = globalThis.location) {
  const v = new URLSearchParams(loc.search).get('svc');
  return v && /^L[1-3]T[1-3](_KEY)?$/.test(v) ? v : null;
}

/**
 * The video codecs a page accepts, from its own URL: `?codecs=h264` (a comma-separated list of RTP
 * encoding names, e.g. `h264,vp8`) makes every video transceiver send and receive only those, as a
 * Safari or an iPhone that decodes H.264 only would; no parameter: every codec the browser has.
 * @param {Location|URL} [loc] the page location (defaults to `globalThis.location`)
 * @returns {string[]|null} lowercase encoding names, or `null` for all
 */
export function videoCodecsFromUrl(loc = globalThis.location) {
  const v = new URLSearchParams(loc.search).get('codecs');
  const names = (v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  return names.length ? names : null;
}

/** Encodings that ride along with a video codec (resends, redundancy, FEC), never chosen alone. */
const AUXILIARY_VIDEO_ENCODINGS = ['rtx', 'red', 'ulpfec', 'flexfec-03'];

/**
 * The claims of a room token (a JWT), read without checking its signature: for showing the right
 * name and controls only. The SFU checks the token and enforces what it allows. Returns `null` for
 * anything that is not a JWT with a JSON object payload.
 * @param {string|null|undefined} token
 * @returns {object|null}
 */
export function tokenClaims(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const binary = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/**
 * What a room token allows, with the protocol's defaults for missing claims (publish, subscribe and
 * chat default to true, admin to false). For the UI only: the SFU enforces.
 * @param {object|null} claims from `tokenClaims`
 * @returns {{publish: boolean, subscribe: boolean, chat: boolean, admin: boolean}}
 */
export function tokenPermissions(claims) {
  return {
    publish: claims?.publish !== false,
    subscribe: claims?.subscribe !== false,
    chat: claims?.chat !== false,
    admin: claims?.admin === true,
  };
}

/**
 * An error the SFU reported with an `error` message, or a failure of the client itself.
 * `code` is one of the protocol's error codes (`room_full`, `invalid_join`, `media_timeout`,
 * `auth_required`, `token_expired`, `bad_token`, `wrong_room`, `forbidden`, ...) or
 * `connection_closed` / `negotiation_failed` / `media_failed` for failures seen on the client side.
 */
export class EdgeSfuError extends Error {
  /**
   * @param {string} code machine-readable code
   * @param {string} message human-readable explanation
   */
  constructor(code, message) {
    super(message);
    /** Machine-readable error code. */
    this.code = code;
    this.name = 'EdgeSfuError';
  }
}

/**
 * A track this client receives from another member, as handed out by the `track` event.
 * @typedef {object} RemoteTrack
 * @property {string} trackId server-wide track id, `"<peerId>:<mid>"`
 * @property {number} peerId the member who publishes it
 * @property {string} mid the mid of the receiving m-line on this client's connection
 * @property {'audio'|'video'} kind
 * @property {string} source `mic`, `camera`, `screen`, `screenAudio` or `other`
 * @property {boolean} muted whether the publisher muted it (a muted track is not forwarded)
 * @property {MediaStreamTrack} track the received track
 * @property {MediaStream} stream a stream holding just this track, ready for `srcObject`
 * @property {RTCRtpTransceiver} transceiver the receiving transceiver
 */

/**
 * A member of the room as this client knows it.
 * @typedef {object} Peer
 * @property {number} id
 * @property {string} name
 * @property {Map<string, {id: string, kind: string, source: string, muted: boolean}>} tracks published tracks by id
 */

/**
 * One participant's connection to edge-sfu: signaling over a WebSocket, media and chat over one
 * RTCPeerConnection, with perfect negotiation where the browser is the polite side.
 *
 * Events (all `CustomEvent`s; read `event.detail`):
 * - `joined` — `{peerId, room, peers}`: the join succeeded.
 * - `peerjoined` — `{peer}`: another member came in.
 * - `peerleft` — `{peerId, peer}`: a member left or was dropped; its tracks were removed first.
 * - `trackpublished` — `{peerId, track}`: a member published a track (it arrives with a later offer).
 * - `trackunpublished` — `{peerId, trackId}`: a member stopped a track.
 * - `trackmuted` — `{peerId, trackId, muted}`: a member muted or unmuted a track.
 * - `track` — `RemoteTrack`: a remote track is now received and can be attached to an element.
 * - `trackremoved` — `RemoteTrack`: a remote track is no longer received; detach it.
 * - `chat` — `{from, name, text, via}`: a chat line of another member (`via` is `datachannel` or `websocket`).
 * - `activespeaker` — `{peerId, trackId}`: the room's dominant speaker changed (`peerId` may be this
 *   client's own id, or `null` when nobody speaks yet or the speaker left).
 * - `layerhint` — `{mid, source, active}`: the SFU said which simulcast layers of a published track
 *   anybody takes; the client already stopped encoding the others (see `setMuted` for how mute interacts).
 * - `recording` — `{active, id, error}`: the room's recording started or stopped (`error` when it
 *   stopped on a failure such as a full disk). The state is in `client.recording`, and whether this
 *   member may start and stop it (`setRecording`) in `client.mayRecord`.
 * - `mediastats` — the SFU's `mediaStats` answer to `requestStats()`: `{estimateBps, allocatedBps,
 *   receiving: [...], publishing: [...]}` (see docs/protocol.md). Also kept in `client.mediaStats`.
 * - `error` — `EdgeSfuError`: the SFU refused something or the session failed.
 * - `connectionstatechange` — `{state}`: the RTCPeerConnection's `connectionState` changed.
 * - `chatopen` / `chatclose` — the chat data channel opened or closed.
 * - `videocodec` — `{codec}`: the room's codec policy asked this client to send video in `codec` (lowercase);
 *   it is put first in the codec preferences and renegotiated (docs/protocol.md, "Codec policy").
 * - `reconnect` — `{url}`: this node drains (an upgrade); join the same room at `url`, another
 *   node of the cluster, where the same room token works.
 * - `datachannel` — `{channel, label, peerId, peer}`: the SFU opened to this client the relay of another
 *   member's data channel (see `openChannel`); `channel` is an `RTCDataChannel` (`binaryType`
 *   `arraybuffer`) with that channel's label and options, whose messages are the ones that member sends.
 * - `close` — `{code, reason, wasClean, left}`: the session is over (left, kicked or disconnected).
 * - `message` — every parsed message from the SFU, for debugging.
 */
export class EdgeSfuClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL of the SFU; defaults to `/ws` on the page's host
   * @param {boolean} [options.sendCandidates=true] trickle local ICE candidates with `candidate` messages
   * @param {(msg: string, ...rest: any[]) => void} [options.log] debug logger (silent by default)
   * @param {RTCConfiguration} [options.rtcConfig] extra RTCPeerConnection settings (`iceServers` come from `joined`)
   * @param {boolean} [options.simulcast=true] publish the camera as three simulcast layers
   *   (`CAMERA_SIMULCAST_LAYERS`); `false` sends one. Screen shares and audio always send one.
   * @param {string|null} [options.scalabilityMode=null] publish the camera as one scalable (SVC) encoding with this
   *   `scalabilityMode` (e.g. `L3T3_KEY`) instead, for a room whose video codec is VP9 or AV1
   */
  constructor(options = {}) {
    super();
    /** WebSocket URL of the SFU. */
    this.url = options.url ?? defaultSignalingUrl();
    /** Whether local ICE candidates are trickled to the SFU. */
    this.sendCandidates = options.sendCandidates ?? true;
    /** The debug logger. */
    this.log = options.log ?? (() => {});
    this._rtcConfig = options.rtcConfig ?? {};
    /** Whether the camera is published with simulcast. */
    this.simulcast = options.simulcast ?? true;
    /** The camera's scalability mode (SVC), or null. */
    this.scalabilityMode = options.scalabilityMode ?? null;
    /** @type {string[]|null} the video codecs (lowercase encoding names) this client accepts; `null`: all */
    this.videoCodecs = options.videoCodecs ?? null;
    /** @type {string|null} the video codec the SFU asked this client to send (`videoCodec`), lowercase */
    this.sendCodec = null;
    /** A `videoCodec` came and no offer made since has carried it. */
    this._codecChangePending = false;
    /** The outstanding offer of this client carries a codec change. */
    this._offerCarriesCodecChange = false;
    /** Lifecycle: `new`, `joining`, `joined`, `closed`. */
    this.state = 'new';
    /** @type {WebSocket|null} the signaling socket */
    this.ws = null;
    /** @type {RTCPeerConnection|null} the one peer connection (exists once joined) */
    this.pc = null;
    /** @type {RTCDataChannel|null} the `chat` data channel */
    this.chatChannel = null;
    /** @type {number|null} this client's peer id, assigned by the SFU in `joined` */
    this.peerId = null;
    /** @type {string|null} the room joined */
    this.room = null;
    /** @type {string|null} this client's display name */
    this.name = null;
    /** @type {RTCIceServer[]} ICE servers from `joined` */
    this.iceServers = [];
    /** @type {Map<number, Peer>} the other members, by id */
    this.peers = new Map();
    /** @type {Map<string, RemoteTrack>} received remote tracks, by track id */
    this.remoteTracks = new Map();
    /** Number of offers/answers exchanged, for diagnostics. */
    this.negotiations = { offersSent: 0, offersReceived: 0, answersSent: 0, answersReceived: 0, rollbacks: 0 };
    /** @type {{peerId: number|null, trackId: string|null}} the room's dominant speaker, from the last `activeSpeaker` */
    this.activeSpeaker = { peerId: null, trackId: null };
    /** @type {object|null} the last `mediaStats` from the SFU (without its `type`), see `requestStats` */
    this.mediaStats = null;

    /**
     * Published sources. `layers`: how many encodings the sender was created with; `hint`: the last
     * `layerHint.active` for its m-line; `params`: the chain serialising its `setParameters` calls.
     * @type {Map<string, {source: string, transceiver: RTCRtpTransceiver, track: MediaStreamTrack|null, muted: boolean,
     *   stream: MediaStream|null, layers: number, hint: boolean[]|null, params: Promise<void>}>}
     */
    this._local = new Map();
    /** trackId → observed tile (see `observeTile`) */
    this._tiles = new Map();
    /** trackId → `{sent}`: sizes given with `setTileSize` */
    this._manualTiles = new Map();
    /** callers of `requestStats` waiting for the next `mediaStats` */
    this._statsWaiters = [];
    /** mid → {peerId, trackId} from the SFU's latest offer */
    this._recvMap = new Map();
    /** track ids the SFU said were unpublished (ignored if a stale offer still maps them) */
    this._unpublished = new Set();
    this._departed = new Set();
    this._queue = Promise.resolve();
    this._pingTimer = null;
    this._negotiationFailures = 0;
    this._leaving = false;
    this._pendingCandidates = [];
  }

  /**
   * Opens the WebSocket, joins the room and sets up the peer connection. The tracks given here go into
   * the first offer together with the `chat` data channel.
   * @param {object} opts
   * @param {string} opts.room room name, 1 to 64 characters
   * @param {string} opts.name display name, 1 to 64 characters
   * @param {number} [opts.capacity] most members the room may hold (honoured only if this join creates it)
   * @param {string} [opts.token] room token (a JWT; required by servers with auth configured). Its
   *   name wins over `name`.
   * @param {{track: MediaStreamTrack, source: string, stream?: MediaStream, muted?: boolean}[]} [opts.tracks]
   *   local tracks to publish right away
   * @returns {Promise<{peerId: number, room: string, peers: object[], iceServers: RTCIceServer[]}>} the `joined` message
   */
  join({ room, name, capacity, token, tracks = [] }) {
    if (this.state !== 'new') return Promise.reject(new Error(`join() called in state ${this.state}`));
    this.state = 'joining';
    this.room = room;
    this.name = name;
    this._initialTracks = tracks;
    return new Promise((resolve, reject) => {
      this._joinWaiter = { resolve, reject };
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this._failJoin(new EdgeSfuError('connection_closed', `cannot open ${this.url}: ${err.message}`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        const join = { type: 'join', version: PROTOCOL_VERSION, room, name };
        if (capacity != null) join.capacity = capacity;
        if (token) join.token = token;
        this._send(join);
        this._pingTimer = setInterval(() => this._send({ type: 'ping' }), PING_INTERVAL_MS);
      };
      ws.onmessage = (ev) => this._onWsMessage(ev.data);
      ws.onerror = () => this.log('websocket error');
      ws.onclose = (ev) => this._onWsClose(ev);
    });
  }

  /**
   * Publishes a local track (or replaces the one already published for `source`, reusing its m-line).
   * Renegotiation follows automatically. A camera goes out as the three simulcast layers of
   * `CAMERA_SIMULCAST_LAYERS` (unless the client was made with `simulcast: false`, or the SFU's answer
   * declines simulcast: then as one full-resolution layer).
   * @param {MediaStreamTrack} track
   * @param {string} source one of `TRACK_SOURCES`
   * @param {{stream?: MediaStream, muted?: boolean}} [opts]
   * @returns {RTCRtpTransceiver} the sending transceiver
   */
  publish(track, source, { stream, muted = false } = {}) {
    if (!TRACK_SOURCES.includes(source)) throw new TypeError(`unknown track source ${source}`);
    if (!this.pc) throw new Error('publish() before joined');
    const streams = stream ? [stream] : [];
    const existing = this._local.get(source);
    if (existing && this._transceiverUsable(existing.transceiver) && existing.transceiver.receiver.track.kind === track.kind) {
      const t = existing.transceiver;
      existing.track = track;
      existing.muted = muted;
      existing.stream = stream ?? null;
      track.enabled = !muted;
      t.sender.replaceTrack(track).catch((err) => this.log('replaceTrack failed', err));
      if (stream && t.sender.setStreams) t.sender.setStreams(stream);
      this._applyEncodings(existing);
      if (t.direction !== 'sendonly') t.direction = 'sendonly'; // renegotiates
      else this._sendMuteIfKnown(existing);
      return t;
    }
    track.enabled = !muted;
    const init = { direction: 'sendonly', streams };
    const camera = track.kind === 'video' && source === 'camera';
    const simulcast = this.simulcast && camera && !this.scalabilityMode;
    if (camera && this.scalabilityMode) {
      init.sendEncodings = [{ active: !muted, maxBitrate: CAMERA_SVC_MAX_BITRATE, scalabilityMode: this.scalabilityMode }];
    } else if (simulcast) {
      init.sendEncodings = CAMERA_SIMULCAST_LAYERS.map((l) => ({ ...l, active: !muted }));
    } else if (track.kind === 'video' && source === 'camera') {
      init.sendEncodings = [{ active: !muted, maxBitrate: CAMERA_SINGLE_LAYER_MAX_BITRATE }];
    } else if (muted) {
      init.sendEncodings = [{ active: false }];
    }
    const transceiver = this.pc.addTransceiver(track, init);
    this._applyCodecPreferences(transceiver, track.kind);
    if (track.kind === 'video' && source === 'screen') {
      try { track.contentHint = track.contentHint || 'detail'; } catch { /* not supported */ }
    }
    const entry = {
      source, transceiver, track, muted, stream: stream ?? null,
      layers: simulcast ? CAMERA_SIMULCAST_LAYERS.length : 1, hint: null, params: Promise.resolve(),
    };
    // An existing entry for this source (its transceiver stopped) is replaced: hints were for its m-line.
    this._local.set(source, entry);
    return transceiver;
  }

  /**
   * Stops publishing the track of `source`: the sender is emptied and its m-line made inactive (it is
   * kept and reused by the next `publish` of the same source). The track itself is not stopped.
   * @param {string} source
   * @returns {boolean} whether something was published for `source`
   */
  unpublish(source) {
    const e = this._local.get(source);
    if (!e || !e.track) return false;
    e.track = null;
    e.muted = false;
    if (this._transceiverUsable(e.transceiver)) {
      e.transceiver.sender.replaceTrack(null).catch(() => {});
      e.transceiver.direction = 'inactive'; // renegotiates; the offer no longer lists it
    }
    return true;
  }

  /**
   * Swaps the media of a published source without renegotiating (e.g. turning the camera back on).
   * `null` sends nothing until another track is given.
   * @param {string} source
   * @param {MediaStreamTrack|null} track
   * @returns {Promise<void>}
   */
  async replaceTrack(source, track) {
    const e = this._local.get(source);
    if (!e) throw new Error(`nothing published for ${source}`);
    if (track) track.enabled = !e.muted;
    await e.transceiver.sender.replaceTrack(track);
    if (track) e.track = track;
  }

  /**
   * Mutes or unmutes a published source. The browser stops sending it altogether (every encoding of
   * its sender is made inactive with `setParameters`; unmuting restores them, a simulcast camera to
   * the layers the SFU's last `layerHint` asked for), `track.enabled` follows, and the SFU is told
   * with a `mute` message (it stops forwarding the track and tells the others with `trackMuted`).
   * @param {string} source
   * @param {boolean} muted
   * @returns {boolean} whether `source` is published
   */
  setMuted(source, muted) {
    const e = this._local.get(source);
    if (!e || !e.transceiver) return false;
    e.muted = !!muted;
    if (e.track) e.track.enabled = !muted;
    this._applyEncodings(e);
    this._sendMuteIfKnown(e);
    return true;
  }

  /**
   * The server-wide id (`"<peerId>:<mid>"`) of the track this client publishes for `source`, once
   * joined and negotiated; the key of its entry in `mediaStats.publishing`.
   * @param {string} source
   * @returns {string|null}
   */
  localTrackId(source) {
    const mid = this._local.get(source)?.transceiver?.mid;
    return mid != null && this.peerId != null ? `${this.peerId}:${mid}` : null;
  }

  /**
   * Reports the size at which a received video track is drawn, and keeps reporting it: `element`
   * (the `<video>`, or the tile holding it) is watched with a ResizeObserver and an
   * IntersectionObserver, and a `tileSize` message (CSS pixels times `devicePixelRatio`, rounded)
   * goes to the SFU right away and then whenever the size settles on a new value for
   * `TILE_SIZE_DEBOUNCE_MS`. A hidden element (`display: none`, zero size, detached, or scrolled
   * completely out of view) is reported as 0×0: the SFU then sends it no video. The SFU picks the
   * simulcast layer that fits. Observing stops by itself when the track is removed.
   * @param {string} trackId a remote track's id (`RemoteTrack.trackId`)
   * @param {Element} element what the page draws the track in
   * @returns {() => void} stops observing
   */
  observeTile(trackId, element) {
    this.unobserveTile(trackId);
    const obs = { trackId, element, intersecting: true, ioSeen: false, sent: null, timer: null, ro: null, io: null };
    const schedule = (settle = true) => {
      clearTimeout(obs.timer);
      obs.timer = setTimeout(() => this._reportTile(obs), obs.sent && settle ? TILE_SIZE_DEBOUNCE_MS : 0);
    };
    obs.schedule = schedule;
    if (typeof ResizeObserver === 'function') {
      obs.ro = new ResizeObserver(() => schedule());
      obs.ro.observe(element);
    }
    if (typeof IntersectionObserver === 'function') {
      obs.io = new IntersectionObserver((entries) => {
        obs.intersecting = entries[entries.length - 1].isIntersecting;
        obs.ioSeen = true;
        schedule();
      });
      obs.io.observe(element);
    } else {
      obs.ioSeen = true;
    }
    this._tiles.set(trackId, obs);
    // The first report waits for the IntersectionObserver's first answer (it comes within a frame),
    // so that a tile born off-screen is not first announced as visible; this one is the fallback.
    obs.firstTimer = setTimeout(() => { obs.ioSeen = true; schedule(false); }, 500);
    if (obs.ioSeen) schedule(false);
    return () => {
      if (this._tiles.get(trackId) === obs) this.unobserveTile(trackId);
    };
  }

  /**
   * Stops the reports started by `observeTile` (the last reported size stays in force at the SFU).
   * @param {string} trackId
   */
  unobserveTile(trackId) {
    const obs = this._tiles.get(trackId);
    if (!obs) return;
    this._tiles.delete(trackId);
    clearTimeout(obs.timer);
    clearTimeout(obs.firstTimer);
    obs.ro?.disconnect();
    obs.io?.disconnect();
  }

  /**
   * Reports the size at which a received video track is drawn, once (for pages that lay out video
   * themselves instead of using `observeTile`). Sent only when it differs from the last report.
   * @param {string} trackId
   * @param {number} width device pixels; 0 when hidden
   * @param {number} height device pixels; 0 when hidden
   * @returns {boolean} whether a message went out
   */
  setTileSize(trackId, width, height) {
    let w = Math.max(0, Math.round(width) || 0);
    let h = Math.max(0, Math.round(height) || 0);
    if (w === 0 || h === 0) w = h = 0;
    let obs = this._tiles.get(trackId) ?? this._manualTiles.get(trackId);
    if (!obs) {
      obs = { trackId, sent: null };
      this._manualTiles.set(trackId, obs);
    }
    if (obs.sent && obs.sent[0] === w && obs.sent[1] === h) return false;
    if (this.state !== 'joined' || !this._send({ type: 'tileSize', trackId, width: w, height: h })) return false;
    obs.sent = [w, h];
    return true;
  }

  /**
   * The tile size last reported to the SFU for a received track, as `[width, height]`, or null.
   * @param {string} trackId
   * @returns {[number, number]|null}
   */
  reportedTileSize(trackId) {
    const sent = this._tiles.get(trackId)?.sent ?? this._manualTiles.get(trackId)?.sent;
    return sent ? [...sent] : null;
  }

  /**
   * Asks the SFU for its per-track counters of this client (`getStats`); resolves with the
   * `mediaStats` answer, which also comes as a `mediastats` event and stays in `mediaStats`.
   * @param {{timeout?: number}} [opts] how long to wait for the answer, in milliseconds (default 5000)
   * @returns {Promise<{estimateBps: number|null, allocatedBps: number, receiving: object[], publishing: object[]}>}
   */
  requestStats({ timeout = 5000 } = {}) {
    if (this.state !== 'joined') return Promise.reject(new Error('not in a room'));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        this._statsWaiters = this._statsWaiters.filter((w) => w !== waiter);
        reject(new EdgeSfuError('timeout', `no mediaStats within ${timeout} ms`));
      }, timeout);
      this._statsWaiters.push(waiter);
      if (!this._send({ type: 'getStats' })) {
        clearTimeout(waiter.timer);
        this._statsWaiters = this._statsWaiters.filter((w) => w !== waiter);
        reject(new EdgeSfuError('connection_closed', 'the signaling connection is not open'));
      }
    });
  }

  /**
   * Whether `source` is published and muted.
   * @param {string} source
   * @returns {boolean}
   */
  isMuted(source) {
    return !!this._local.get(source)?.muted;
  }

  /**
   * The local track currently published for `source`, if any.
   * @param {string} source
   * @returns {MediaStreamTrack|null}
   */
  localTrack(source) {
    return this._local.get(source)?.track ?? null;
  }

  /**
   * Opens a data channel that the SFU relays to every other member, for cursors, reactions, game state
   * (docs/protocol.md, "Any data channel"): each of them gets a `datachannel` event with a channel of
   * the same label and options that carries this channel's text and binary messages unchanged. Any label
   * but `chat`; at most 16 per member, messages of at most 16 KiB (the SFU answers an `error` past its
   * limits). Call after `join`.
   * @param {string} label
   * @param {{ordered?: boolean, maxRetransmits?: number, maxPacketLifetime?: number}} [options] as for
   *   `RTCPeerConnection.createDataChannel`; `ordered` defaults to `true`
   * @returns {RTCDataChannel} the channel to send on (`binaryType` `arraybuffer`)
   */
  openChannel(label, options = {}) {
    if (!this.pc) throw new EdgeSfuError('not_joined', 'join before opening data channels');
    if (typeof label !== 'string' || label.length === 0) throw new TypeError('a data channel needs a label');
    if (label === CHAT_CHANNEL_LABEL) throw new RangeError('`chat` is the chat channel: use sendChat');
    const { ordered = true, maxRetransmits, maxPacketLifetime } = options;
    const init = { ordered };
    if (maxRetransmits !== undefined) init.maxRetransmits = maxRetransmits;
    if (maxPacketLifetime !== undefined) init.maxPacketLifetime = maxPacketLifetime;
    const channel = this.pc.createDataChannel(label, init);
    channel.binaryType = 'arraybuffer';
    return channel;
  }

  /**
   * Sends a chat line: over the `chat` data channel when it is open, else as a `chat` WebSocket message.
   * The SFU relays it to the others only; show your own line yourself.
   * @param {string} text at most `MAX_CHAT_LENGTH` characters
   * @returns {'datachannel'|'websocket'} the path used
   */
  sendChat(text) {
    if (typeof text !== 'string' || text.length === 0) throw new TypeError('chat text must be a non-empty string');
    if (text.length > MAX_CHAT_LENGTH) throw new RangeError(`chat text longer than ${MAX_CHAT_LENGTH} characters`);
    if (this.state !== 'joined') throw new Error('not in a room');
    if (this.chatChannel && this.chatChannel.readyState === 'open') {
      this.chatChannel.send(JSON.stringify({ text }));
      return 'datachannel';
    }
    this._send({ type: 'chat', text });
    return 'websocket';
  }

  /**
   * Leaves the room: sends `leave`, closes the peer connection and the WebSocket. Local tracks are not
   * stopped (they belong to the caller). Safe to call more than once.
   */
  leave() {
    if (this.state === 'closed') return;
    this._leaving = true;
    if (this.state === 'joined') this._send({ type: 'leave' });
    this._teardown({ code: 1000, reason: 'left', wasClean: true, left: true });
  }

  /**
   * The peer connection's statistics (`RTCPeerConnection.getStats()`), or an empty map before joining.
   * @returns {Promise<RTCStatsReport|Map<string, any>>}
   */
  getStats() {
    return this.pc ? this.pc.getStats() : Promise.resolve(new Map());
  }

  /**
   * Remote tracks received from one member.
   * @param {number} peerId
   * @returns {RemoteTrack[]}
   */
  tracksOf(peerId) {
    return [...this.remoteTracks.values()].filter((t) => t.peerId === peerId);
  }

  // ---------------------------------------------------------------- internals

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Hands the SFU a fresh room token (after `tokenexpiring`): same room and identity, later expiry. */
  refreshToken(token) {
    return this.state === 'joined' && this._send({ type: 'refresh', token });
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  _enqueue(fn) {
    const run = this._queue.then(() => (this.state === 'closed' ? undefined : fn()));
    this._queue = run.catch((err) => {
      this.log('signaling step failed', err);
    });
    return run;
  }

  _transceiverUsable(t) {
    return !!t && t.currentDirection !== 'stopped' && !t.stopped;
  }

  /** Measures an observed tile and reports it when it changed (see `observeTile`). */
  _reportTile(obs) {
    if (this._tiles.get(obs.trackId) !== obs || !obs.ioSeen) return;
    const el = obs.element;
    let w = 0;
    let h = 0;
    if (el.isConnected && obs.intersecting && el.getClientRects().length > 0) {
      const r = el.getBoundingClientRect();
      const dpr = globalThis.devicePixelRatio || 1;
      w = Math.round(r.width * dpr);
      h = Math.round(r.height * dpr);
    }
    if (w === 0 || h === 0) w = h = 0;
    if (obs.sent && obs.sent[0] === w && obs.sent[1] === h) return;
    if (this.state !== 'joined' || !this._send({ type: 'tileSize', trackId: obs.trackId, width: w, height: h })) return;
    obs.sent = [w, h];
  }

  /** Which encodings of a published source should be sending: none while muted, else the last layer hint's. */
  _wantedActive(e, n) {
    const hint = e.hint && e.hint.length === n ? e.hint : null;
    return Array.from({ length: n }, (_, i) => !e.muted && (hint ? !!hint[i] : true));
  }

  /**
   * Brings the sender's encodings in line with the mute state and the layer hint (`active` flags), and
   * turns a simulcast camera whose simulcast the SFU declined into one full-resolution layer. Calls are
   * chained per sender: `setParameters` refuses a second change while one is in flight.
   */
  _applyEncodings(e) {
    const t = e.transceiver;
    if (!t || !this._transceiverUsable(t)) return e.params;
    e.params = e.params.then(async () => {
      if (this.state === 'closed' || !this._transceiverUsable(t)) return;
      const sender = t.sender;
      const p = sender.getParameters();
      const encodings = p.encodings ?? [];
      if (encodings.length === 0) return;
      let changed = false;
      if (e.layers > 1 && encodings.length === 1 && t.currentDirection && (encodings[0].scaleResolutionDownBy ?? 1) !== 1) {
        // The answer had no a=simulcast: the browser kept only the lowest layer. Send that one in full.
        this.log(`simulcast declined for ${e.source}: one layer`);
        encodings[0].scaleResolutionDownBy = 1;
        encodings[0].maxBitrate = CAMERA_SINGLE_LAYER_MAX_BITRATE;
        changed = true;
      }
      const want = this._wantedActive(e, encodings.length);
      encodings.forEach((enc, i) => {
        if (enc.active !== want[i]) {
          enc.active = want[i];
          changed = true;
        }
      });
      if (changed) await sender.setParameters(p);
    }).catch((err) => this.log('setParameters failed', e.source, err));
    return e.params;
  }

  /**
   * Orders a transceiver's codecs: only the accepted ones (`videoCodecs`), the one the SFU asked
   * for (`sendCodec`) first. Audio is left alone.
   * @param {RTCRtpTransceiver} t
   * @param {string} kind
   */
  _applyCodecPreferences(t, kind) {
    if (kind !== 'video' || typeof t.setCodecPreferences !== 'function') return;
    if (!this.videoCodecs && !this.sendCodec) return;
    const sending = t.direction === 'sendonly' || t.direction === 'sendrecv';
    const caps = (sending ? RTCRtpSender : RTCRtpReceiver).getCapabilities('video')?.codecs ?? [];
    const name = (c) => c.mimeType.slice('video/'.length).toLowerCase();
    const accepted = caps.filter((c) => AUXILIARY_VIDEO_ENCODINGS.includes(name(c))
      || !this.videoCodecs || this.videoCodecs.includes(name(c)));
    const rank = (c) => (name(c) === this.sendCodec ? 0 : 1);
    const ordered = accepted.map((c, i) => [c, i]).sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]).map(([c]) => c);
    try {
      t.setCodecPreferences(ordered);
    } catch (err) {
      this.log('setCodecPreferences failed', err);
    }
  }

  /**
   * The room's codec policy asks this client to send `codec` (see docs/protocol.md): it goes first in
   * the sending video transceivers' preferences, and a renegotiation makes it the one sent. A codec
   * this client does not accept is ignored (the SFU never asks for one its SDP did not list).
   * @param {string} codec an RTP encoding name
   */
  _onVideoCodec(codec) {
    const wanted = String(codec).toLowerCase();
    if (this.videoCodecs && !this.videoCodecs.includes(wanted)) return;
    this.sendCodec = wanted;
    this._emit('videocodec', { codec: wanted });
    if (!this.pc) return;
    for (const e of this._local.values()) {
      if (this._transceiverUsable(e.transceiver)) this._applyCodecPreferences(e.transceiver, e.transceiver.receiver.track.kind);
    }
    // The SFU's answer to the offer that told it what this client decodes often has the codec first already.
    if (this.pc.signalingState === 'stable' && this._sendsVideoCodec(wanted)) return;
    this._codecChangePending = true;
    this._enqueue(() => this._negotiate()).catch(() => {});
  }

  /**
   * Whether every published video track goes out in `codec` (the first of its sender's negotiated codecs).
   * @param {string} codec lowercase encoding name
   */
  _sendsVideoCodec(codec) {
    return [...this._local.values()]
      .filter((e) => e.track?.kind === 'video' && this._transceiverUsable(e.transceiver))
      .every((e) => e.transceiver.sender.getParameters().codecs?.[0]?.mimeType.toLowerCase() === `video/${codec}`);
  }

  _onLayerHint(mid, active) {
    if (!Array.isArray(active)) return;
    for (const e of this._local.values()) {
      if (e.transceiver?.mid !== String(mid) || !this._transceiverUsable(e.transceiver)) continue;
      e.hint = active.map(Boolean);
      this._applyEncodings(e);
      this._emit('layerhint', { mid: String(mid), source: e.source, active: [...e.hint] });
      return;
    }
    this.log('layerHint for an unknown mid', mid);
  }

  /** An admin removed this member (or closed the room): `removed` says why, then `close`. */
  _onRemoved(reason) {
    this.log('removed by an admin', reason);
    this._emit('removed', { reason: reason ?? '' });
    this._teardown({ code: 1000, reason: reason || 'removed', wasClean: true, left: false, removed: true });
  }

  /**
   * An admin muted (or unmuted) the source published on `mid`: the browser stops sending it as
   * for `setMuted`, without telling the SFU (it decided). Until an admin unmutes it, the SFU refuses
   * this client's own unmute.
   */
  _onForceMuted(mid, trackId, muted) {
    for (const e of this._local.values()) {
      if (e.transceiver?.mid !== String(mid)) continue;
      e.muted = !!muted;
      if (e.track) e.track.enabled = !muted;
      this._applyEncodings(e);
      this._emit('forcemuted', { source: e.source, mid: String(mid), trackId, muted: !!muted });
      return;
    }
    this.log('forceMuted for an unknown mid', mid);
  }

  _onActiveSpeaker(peerId, trackId) {
    this.activeSpeaker = { peerId: peerId ?? null, trackId: trackId ?? null };
    this._emit('activespeaker', { ...this.activeSpeaker });
  }

  _onMediaStats(msg) {
    const { type, ...stats } = msg;
    this.mediaStats = stats;
    const waiters = this._statsWaiters;
    this._statsWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(stats);
    }
    this._emit('mediastats', stats);
  }

  _sendMuteIfKnown(e) {
    const mid = e.transceiver?.mid;
    if (mid != null && this.state === 'joined' && e.track) this._send({ type: 'mute', mid, muted: e.muted });
    // Otherwise the state goes to the SFU with the next offer's `tracks[].muted`.
  }

  /** The `tracks` list of an offer: every m-line this client sends on. */
  _publishedTracks() {
    const out = [];
    for (const e of this._local.values()) {
      const t = e.transceiver;
      if (!this._transceiverUsable(t) || t.mid == null || !e.track) continue;
      if (t.direction !== 'sendonly' && t.direction !== 'sendrecv') continue;
      out.push({ mid: t.mid, source: e.source, muted: !!e.muted });
    }
    return out;
  }

  _failJoin(err) {
    const w = this._joinWaiter;
    this._joinWaiter = null;
    if (w) w.reject(err);
  }

  _onWsMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.log('unparsable message from SFU', data);
      return;
    }
    this._emit('message', msg);
    switch (msg.type) {
      case 'joined': return this._onJoined(msg);
      case 'peerJoined': return this._onPeerJoined(msg.peer);
      case 'peerLeft': return this._onPeerLeft(msg.peerId);
      case 'trackPublished': return this._onTrackPublished(msg.peerId, msg.track);
      case 'trackUnpublished': return this._onTrackUnpublished(msg.peerId, msg.trackId);
      case 'trackMuted': return this._onTrackMuted(msg.peerId, msg.trackId, msg.muted);
      case 'offer':
        this._enqueue(() => this._onRemoteOffer(msg)).catch(() => {});
        return;
      case 'answer':
        this._enqueue(() => this._onRemoteAnswer(msg)).catch(() => {});
        return;
      case 'chat':
        this._emit('chat', { from: msg.from, name: msg.name, text: msg.text, via: 'websocket' });
        return;
      case 'error': return this._onServerError(msg);
      case 'activeSpeaker': return this._onActiveSpeaker(msg.peerId, msg.trackId);
      case 'layerHint': return this._onLayerHint(msg.mid, msg.active);
      case 'mediaStats': return this._onMediaStats(msg);
      case 'recording': return this._onRecording(msg);
      case 'removed': return this._onRemoved(msg.reason);
      case 'forceMuted': return this._onForceMuted(msg.mid, msg.trackId, msg.muted);
      case 'videoCodec': return this._onVideoCodec(msg.codec);
      case 'pong': return;
      // The room token runs out in `secondsLeft`: send a fresh one with refreshToken() to stay.
      case 'tokenExpiring': return this._emit('tokenexpiring', { secondsLeft: msg.secondsLeft });
      case 'tokenRefreshed': return this._emit('tokenrefreshed', { secondsLeft: msg.secondsLeft });
      // The connection closes right after; `close` follows.
      case 'serverStopping': return this._emit('serverstopping', {});
      // The node drains (--cluster): join the same room again at `url`, another node.
      case 'reconnect': return this._emit('reconnect', { url: msg.url });
      default:
        this.log('unknown message type', msg.type);
    }
  }

  _onRecording(msg) {
    this.recording = { active: msg.active === true, id: msg.id ?? null, error: msg.error ?? null };
    this._emit('recording', { ...this.recording });
  }

  /**
   * Starts (`true`) or stops the room's recording; needs the `record` permission (`mayRecord`).
   * The outcome arrives as a `recording` event (or an `error`).
   * @param {boolean} active
   */
  setRecording(active) {
    if (this.state !== 'joined') throw new Error('not in a room');
    this._send({ type: 'record', active: active === true });
  }

  _onServerError(msg) {
    const err = new EdgeSfuError(msg.code, msg.message || msg.code);
    this.log('SFU error', msg.code, msg.message);
    if (this.state === 'joining') {
      // The join was refused (room_full, invalid_join, unsupported_version, ...).
      this._failJoin(err);
      this._teardown({ code: 1000, reason: msg.code, wasClean: true, left: false });
      this._emit('error', err);
      return;
    }
    this._emit('error', err);
    if (['media_timeout', 'unavailable', 'token_expired', 'token_revoked'].includes(msg.code)) {
      // The SFU removed us from the room.
      this._teardown({ code: 1000, reason: msg.code, wasClean: false, left: false });
    }
  }

  _onJoined(msg) {
    if (this.state !== 'joining') return;
    this.state = 'joined';
    this.peerId = msg.peerId;
    this.room = msg.room ?? this.room;
    this.iceServers = (msg.iceServers ?? []).map((s) => {
      const out = { urls: s.urls };
      if (s.username != null) out.username = s.username;
      if (s.credential != null) out.credential = s.credential;
      return out;
    });
    // Whether the room is being recorded, and whether this member may start and stop that.
    this.recording = { active: msg.recording != null, id: msg.recording ?? null, error: null };
    this.mayRecord = msg.mayRecord === true;
    for (const p of msg.peers ?? []) this._rememberPeer(p);
    this._createPeerConnection();
    for (const t of this._initialTracks ?? []) {
      if (t && t.track) this.publish(t.track, t.source, { stream: t.stream, muted: t.muted });
    }
    this._initialTracks = null;
    const info = { peerId: this.peerId, room: this.room, peers: [...this.peers.values()], iceServers: this.iceServers };
    const w = this._joinWaiter;
    this._joinWaiter = null;
    if (w) w.resolve(info);
    this._emit('joined', info);
  }

  _createPeerConnection() {
    const pc = new RTCPeerConnection({ ...this._rtcConfig, iceServers: this.iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.onnegotiationneeded = () => {
      this._enqueue(() => this._negotiate()).catch(() => {});
    };
    pc.onicecandidate = (ev) => {
      if (!this.sendCandidates || !ev.candidate || !ev.candidate.candidate) return;
      this._send({ type: 'candidate', candidate: ev.candidate.candidate });
    };
    pc.onconnectionstatechange = () => {
      this.log('connection state', pc.connectionState);
      this._emit('connectionstatechange', { state: pc.connectionState });
      if (pc.connectionState === 'failed') {
        this._emit('error', new EdgeSfuError('media_failed', 'the media connection to the SFU failed'));
      }
    };
    pc.ontrack = (ev) => {
      this.log('ontrack', ev.transceiver.mid, ev.track.kind);
      // Attached in _reconcileRemote once the answer is applied, using the offer's mid → track mapping.
    };
    pc.ondatachannel = (ev) => {
      // Only relays open this way: the SFU names the sending member in the channel's protocol.
      const channel = ev.channel;
      const peerId = Number(channel.protocol);
      channel.binaryType = 'arraybuffer';
      this._emit('datachannel', { channel, label: channel.label, peerId, peer: this.peers.get(peerId) ?? null });
    };
    const dc = pc.createDataChannel(CHAT_CHANNEL_LABEL, { ordered: true });
    this.chatChannel = dc;
    dc.onopen = () => this._emit('chatopen', {});
    dc.onclose = () => this._emit('chatclose', {});
    dc.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        this.log('bad chat frame', ev.data);
        return;
      }
      if (m && m.type === 'chat') this._emit('chat', { from: m.from, name: m.name, text: m.text, via: 'datachannel' });
    };
  }

  /** Sends an offer for the current local state (runs on `negotiationneeded`). */
  async _negotiate() {
    const pc = this.pc;
    if (!pc || this.state !== 'joined') return;
    if (pc.signalingState !== 'stable') return; // negotiationneeded fires again once stable
    if (this._negotiationFailures >= 3) {
      this.log('not renegotiating after repeated failures');
      return;
    }
    await pc.setLocalDescription();
    if (pc.signalingState !== 'have-local-offer') return;
    this._offerCarriesCodecChange = this._codecChangePending;
    this._codecChangePending = false;
    this._send({ type: 'offer', sdp: pc.localDescription.sdp, tracks: this._publishedTracks() });
    this.negotiations.offersSent++;
  }

  /** The SFU's offer. We are polite: a pending offer of ours is rolled back. */
  async _onRemoteOffer(msg) {
    const pc = this.pc;
    if (!pc) return;
    this.negotiations.offersReceived++;
    if (pc.signalingState === 'have-local-offer') {
      this.log('glare: rolling back our offer');
      this.negotiations.rollbacks++;
      await pc.setLocalDescription({ type: 'rollback' });
      // A codec change the rolled-back offer carried is offered again after this exchange.
      if (this._offerCarriesCodecChange) this._codecChangePending = true;
    }
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      for (const t of pc.getTransceivers()) {
        if (this._transceiverUsable(t)) this._applyCodecPreferences(t, t.receiver.track.kind);
      }
      await pc.setLocalDescription();
    } catch (err) {
      this._negotiationFailures++;
      this._emit('error', new EdgeSfuError('negotiation_failed', `cannot apply the SFU's offer: ${err.message}`));
      if (pc.signalingState !== 'stable') await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      return;
    }
    this._send({ type: 'answer', sdp: pc.localDescription.sdp });
    this.negotiations.answersSent++;
    this._negotiationFailures = 0;
    this._recvMap = new Map((msg.tracks ?? []).map((t) => [String(t.mid), { peerId: t.peerId, trackId: t.trackId }]));
    this._reconcileRemote();
    this._afterNegotiation();
  }

  /** The SFU's answer to our offer. An answer arriving when no offer is pending is stale and ignored. */
  async _onRemoteAnswer(msg) {
    const pc = this.pc;
    if (!pc) return;
    if (pc.signalingState !== 'have-local-offer') {
      this.log('ignoring answer in state', pc.signalingState);
      return;
    }
    this.negotiations.answersReceived++;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      this._negotiationFailures = 0;
    } catch (err) {
      this._negotiationFailures++;
      this._emit('error', new EdgeSfuError('negotiation_failed', `cannot apply the SFU's answer: ${err.message}`));
      await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      return;
    }
    this._reconcileRemote();
    this._afterNegotiation();
  }

  /** After an offer/answer exchange: the senders' encodings as negotiated (simulcast kept or declined). */
  _afterNegotiation() {
    for (const e of this._local.values()) if (e.track) this._applyEncodings(e);
    // A codec change that came while this exchange was under way: one more offer carries it.
    if (this._codecChangePending && this.sendCodec && this._sendsVideoCodec(this.sendCodec)) this._codecChangePending = false;
    if (this._codecChangePending) this._enqueue(() => this._negotiate()).catch(() => {});
  }

  /** Brings `remoteTracks` in line with the receiving transceivers and the SFU's mid → track mapping. */
  _reconcileRemote() {
    const pc = this.pc;
    if (!pc) return;
    const want = new Map();
    for (const t of pc.getTransceivers()) {
      if (t.mid == null || !this._transceiverUsable(t)) continue;
      const dir = t.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      const m = this._recvMap.get(t.mid);
      if (!m) continue;
      if (this._departed.has(m.peerId) || this._unpublished.has(m.trackId)) continue;
      want.set(m.trackId, { ...m, transceiver: t });
    }
    for (const [id, rt] of this.remoteTracks) {
      const w = want.get(id);
      if (!w || w.transceiver !== rt.transceiver) this._removeRemote(id);
    }
    for (const [id, w] of want) {
      if (this.remoteTracks.has(id)) continue;
      const track = w.transceiver.receiver.track;
      const peer = this._ensurePeer(w.peerId);
      const info = peer.tracks.get(id);
      const rt = {
        trackId: id,
        peerId: w.peerId,
        mid: w.transceiver.mid,
        kind: info?.kind ?? track.kind,
        source: info?.source ?? (track.kind === 'audio' ? 'mic' : 'camera'),
        muted: !!info?.muted,
        track,
        stream: new MediaStream([track]),
        transceiver: w.transceiver,
      };
      this.remoteTracks.set(id, rt);
      this._emit('track', rt);
    }
  }

  _removeRemote(trackId) {
    const rt = this.remoteTracks.get(trackId);
    if (!rt) return;
    this.remoteTracks.delete(trackId);
    this.unobserveTile(trackId);
    this._manualTiles.delete(trackId);
    this._emit('trackremoved', rt);
  }

  _rememberPeer(p) {
    const peer = this._ensurePeer(p.id);
    peer.name = p.name;
    for (const t of p.tracks ?? []) {
      peer.tracks.set(t.id, { ...t });
      this._unpublished.delete(t.id);
    }
    return peer;
  }

  _ensurePeer(id) {
    let peer = this.peers.get(id);
    if (!peer) {
      peer = { id, name: `#${id}`, tracks: new Map() };
      this.peers.set(id, peer);
    }
    return peer;
  }

  _onPeerJoined(p) {
    if (!p) return;
    this._departed.delete(p.id);
    const peer = this._rememberPeer(p);
    this._emit('peerjoined', { peer });
  }

  _onPeerLeft(peerId) {
    this._departed.add(peerId);
    for (const rt of [...this.remoteTracks.values()]) if (rt.peerId === peerId) this._removeRemote(rt.trackId);
    const peer = this.peers.get(peerId) ?? null;
    this.peers.delete(peerId);
    this._emit('peerleft', { peerId, peer });
  }

  _onTrackPublished(peerId, track) {
    if (!track) return;
    const peer = this._ensurePeer(peerId);
    peer.tracks.set(track.id, { ...track });
    this._unpublished.delete(track.id);
    this._emit('trackpublished', { peerId, track });
    // A track already received under a guessed source gets its real one.
    const rt = this.remoteTracks.get(track.id);
    if (rt && (rt.source !== track.source || rt.muted !== track.muted)) {
      this._removeRemote(track.id);
      this._reconcileRemote();
    }
  }

  _onTrackUnpublished(peerId, trackId) {
    this.peers.get(peerId)?.tracks.delete(trackId);
    this._unpublished.add(trackId);
    this._removeRemote(trackId);
    this._emit('trackunpublished', { peerId, trackId });
  }

  _onTrackMuted(peerId, trackId, muted) {
    const info = this.peers.get(peerId)?.tracks.get(trackId);
    if (info) info.muted = muted;
    const rt = this.remoteTracks.get(trackId);
    if (rt) rt.muted = muted;
    this._emit('trackmuted', { peerId, trackId, muted });
  }

  _onWsClose(ev) {
    this.log('websocket closed', ev.code, ev.reason);
    if (this.state === 'closed') return;
    if (this.state === 'joining') {
      this._failJoin(new EdgeSfuError('connection_closed', `the SFU closed the connection (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`));
    }
    this._teardown({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean, left: this._leaving });
  }

  _teardown(detail) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    for (const id of [...this.remoteTracks.keys()]) this._removeRemote(id);
    for (const id of [...this._tiles.keys()]) this.unobserveTile(id);
    for (const w of this._statsWaiters) {
      clearTimeout(w.timer);
      w.reject(new EdgeSfuError('connection_closed', 'the session ended'));
    }
    this._statsWaiters = [];
    if (this.chatChannel) {
      try { this.chatChannel.close(); } catch { /* already closed */ }
    }
    if (this.pc) {
      try { this.pc.close(); } catch { /* already closed */ }
    }
    if (this.ws) {
      const ws = this.ws;
      ws.onmessage = null;
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN) {
        // Let a just-queued `leave` go out before closing.
        try { ws.close(1000, 'bye'); } catch { /* closing */ }
      } else if (ws.readyState === WebSocket.CONNECTING) {
        ws.onopen = () => ws.close(1000, 'bye');
      }
    }
    this._emit('close', detail);
  }
}
