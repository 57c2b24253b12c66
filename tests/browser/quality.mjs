// Helpers of the media-quality browser tests (quality.test.mjs, shaped.test.mjs): a peer's camera tile on the room
// page, its size, and the WebRTC counters the tests read.

/** The selector of `peerId`'s camera tile on the room page. */
export function tileOf(peerId) {
  return `.tile[data-peer-id="${peerId}"][data-source="camera"]`;
}

/** The track id of `peerId`'s camera as `page` receives it, or null while it does not. */
export function videoTrackOf(page, peerId) {
  return page.evaluate((id) => [...(window.edgeSfu?.remoteTracks.values() ?? [])]
    .find((rt) => rt.peerId === id && rt.kind === 'video' && rt.source === 'camera')?.trackId ?? null, peerId);
}

/**
 * Gives `peerId`'s camera tile on `page` a fixed size in CSS pixels, `width` by `width * 9 / 16`, whatever the page's
 * layout would make it. The page reports the new size through its ResizeObserver. Resolves with the size of the
 * tile's `<video>` in device pixels (`renderedSize`), which is what the page reports.
 */
export async function setTileWidth(page, peerId, width) {
  await page.evaluate(({ sel, width }) => {
    const tile = document.querySelector(sel);
    if (!tile) throw new Error(`no tile ${sel}`);
    tile.style.width = `${width}px`;
    tile.style.height = `${Math.round((width * 9) / 16)}px`;
    tile.style.maxWidth = 'none';
    tile.style.flex = 'none';
    tile.style.alignSelf = 'center';
  }, { sel: tileOf(peerId), width });
  return renderedSize(page, peerId);
}

/** The size at which `page` draws `peerId`'s camera video (its `<video>` element), in device pixels, rounded. */
export function renderedSize(page, peerId) {
  return page.evaluate((sel) => {
    const r = document.querySelector(`${sel} video`).getBoundingClientRect();
    return [Math.round(r.width * devicePixelRatio), Math.round(r.height * devicePixelRatio)];
  }, tileOf(peerId));
}

/**
 * The inbound-rtp counters of a received video track (by track id), or null before it has any.
 * @returns {Promise<{frameWidth: number, frameHeight: number, framesDecoded: number, freezeCount: number,
 *   totalFreezesDuration: number, nackCount: number, pliCount: number, packetsLost: number, packetsReceived: number,
 *   keyFramesDecoded: number}|null>}
 */
export function inboundVideo(page, trackId) {
  return page.evaluate(async (trackId) => {
    const c = window.edgeSfu;
    const rt = c?.remoteTracks.get(trackId);
    if (!rt || !c.pc) return null;
    const report = await c.pc.getStats(rt.track);
    let s = null;
    report.forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') s = x; });
    if (!s) return null;
    return {
      frameWidth: s.frameWidth ?? 0,
      frameHeight: s.frameHeight ?? 0,
      framesDecoded: s.framesDecoded ?? 0,
      freezeCount: s.freezeCount ?? 0,
      totalFreezesDuration: s.totalFreezesDuration ?? 0,
      nackCount: s.nackCount ?? 0,
      pliCount: s.pliCount ?? 0,
      packetsLost: s.packetsLost ?? 0,
      packetsReceived: s.packetsReceived ?? 0,
      keyFramesDecoded: s.keyFramesDecoded ?? 0,
    };
  }, trackId);
}

/** The page's outbound-rtp streams: `{kind, rid, packetsSent, bytesSent, frameWidth, frameHeight, qualityLimitationReason, active}`. */
export function outboundMedia(page) {
  return page.evaluate(async () => {
    const c = window.edgeSfu;
    if (!c?.pc) return [];
    const report = await c.pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      out.push({
        kind: s.kind,
        rid: s.rid ?? null,
        packetsSent: s.packetsSent ?? 0,
        bytesSent: s.bytesSent ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
        qualityLimitationReason: s.qualityLimitationReason ?? null,
        active: s.active ?? null,
      });
    });
    return out;
  });
}

/** The `active` flags of the encodings of the page's sender of `kind` (`audio`/`video`), e.g. `[true, false, false]`. */
export function senderActive(page, kind) {
  return page.evaluate((kind) => window.edgeSfu.pc.getTransceivers()
    .find((tr) => tr.sender.track?.kind === kind || (tr.receiver.track?.kind === kind && tr.direction === 'sendonly'))
    ?.sender.getParameters().encodings.map((e) => e.active) ?? null, kind);
}

/** The page's outbound video layers, lowest first (by rid q, h, f). */
export async function publisherLayers(page) {
  const order = ['q', 'h', 'f'];
  return (await outboundMedia(page)).filter((s) => s.kind === 'video').sort((a, b) => order.indexOf(a.rid) - order.indexOf(b.rid));
}

/**
 * Whether a counter stays the same over `ms` milliseconds: two samples, `ms` apart (for `poll`: true once a quiet
 * window was seen).
 * @param {() => Promise<number|null>} sample
 * @param {number} ms
 */
export async function stillFor(sample, ms) {
  const a = await sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = await sample();
  return a !== null && a === b;
}
