// Which video codecs a page can use and which it sends and decodes, from the WebRTC API and getStats: the same calls in
// Chromium (playwright) and Firefox (puppeteer) pages.

/**
 * The page's video codecs (`mimeType` and `sdpFmtpLine`) as `RTCRtpSender.getCapabilities` (`send`) and
 * `RTCRtpReceiver.getCapabilities` (`recv`) list them.
 * @returns {Promise<{send: string[], recv: string[]}>}
 */
export function videoCapabilities(page) {
  return page.evaluate(() => {
    const list = (caps) => caps.codecs.map((c) => `${c.mimeType} ${c.sdpFmtpLine ?? ''}`.trim());
    return { send: list(RTCRtpSender.getCapabilities('video')), recv: list(RTCRtpReceiver.getCapabilities('video')) };
  });
}

/** Whether a `videoCapabilities` list has codec `mime` (`video/H264`, …). */
export function lists(codecs, mime) {
  return codecs.some((c) => c === mime || c.startsWith(`${mime} `));
}

/** The codec (mimeType) and frames of the page's inbound and outbound video streams, from getStats. */
export function videoCodecs(page) {
  return page.evaluate(async () => {
    const pc = window.edgeSfu?.pc;
    if (!pc) return { inbound: [], outbound: [] };
    const report = await pc.getStats();
    const codecOf = (s) => report.get(s.codecId)?.mimeType ?? null;
    const inbound = [];
    const outbound = [];
    report.forEach((s) => {
      if (s.kind !== 'video') return;
      if (s.type === 'inbound-rtp') inbound.push({ mid: s.mid, codec: codecOf(s), framesDecoded: s.framesDecoded ?? 0 });
      if (s.type === 'outbound-rtp') outbound.push({ rid: s.rid ?? null, codec: codecOf(s), framesEncoded: s.framesEncoded ?? 0 });
    });
    return { inbound, outbound };
  });
}

/**
 * The camera video the page receives, by publisher: `{[peerId]: {codec, framesDecoded}}` (codec: the inbound-rtp's
 * mimeType, null before a packet came), one entry per remote camera track the page was told of.
 */
export function cameraVideoByPeer(page) {
  return page.evaluate(async () => {
    const c = window.edgeSfu;
    if (!c?.pc) return {};
    const report = await c.pc.getStats();
    const inbound = [];
    report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') inbound.push(s); });
    const byPeer = {};
    for (const rt of c.remoteTracks.values()) {
      if (rt.kind !== 'video' || rt.source !== 'camera') continue;
      const s = inbound.find((x) => x.trackIdentifier === rt.track.id) || inbound.find((x) => x.mid === rt.mid);
      byPeer[rt.peerId] = { codec: (s && report.get(s.codecId)?.mimeType) ?? null, framesDecoded: s?.framesDecoded ?? 0 };
    }
    return byPeer;
  });
}
