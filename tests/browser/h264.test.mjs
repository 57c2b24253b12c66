// H.264 end to end (issue 17): an H.264-only Chromium (`?codecs=h264`: every video transceiver limited to H.264 with
// setCodecPreferences, as a Safari or an iPhone decoding H.264 only) in a room with a VP8 Chromium. The room's codec
// policy asks the VP8 publisher for H.264 while the H.264-only member is there and for VP8 again once it left; both
// decode each other. H.264 simulcast layers get their sizes from the SPS (the SFU's mediaStats lists them) and a small
// and a large viewer decode different layers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, describePage, openPage, poll, roomUrl, serverAndBrowser, skipWithoutChromium, waitJoined,
} from './harness.mjs';
import { inboundVideo, setTileWidth, videoTrackOf } from './quality.mjs';
import { lists, videoCapabilities, videoCodecs } from './codecs.mjs';

const fx = serverAndBrowser('edge-sfu-h264');

/** Opens participant `name` in `room` with the room page's URL options (`video`, `mic`, `camera`, `codecs`). */
async function participant(room, name, options = {}) {
  const page = await openPage(fx.browser, roomUrl(fx.server.url, room, name, options), `${room}/${name}`);
  const id = await waitJoined(page);
  return { page, id, name };
}

async function closeAll(...ps) {
  for (const p of ps) await p?.page.context().close().catch(() => {});
}

/** Runs `fn`; on failure adds what the pages know and the server's log to the message. */
async function explained(what, pages, fn) {
  try {
    return await fn();
  } catch (err) {
    const lines = [`\n--- ${what}`];
    for (const p of pages) {
      lines.push(`${p.name}: ${await describePage(p.page)}`);
      lines.push(`${p.name} SDP m-lines: ${await p.page.evaluate(() => ['currentLocalDescription', 'currentRemoteDescription']
        .map((d) => `${d}: ${(window.edgeSfu.pc[d]?.sdp ?? '').split('\r\n').filter((l) => l.startsWith('m=') || l.startsWith('a=rtpmap')).join(' | ')}`)
        .join('\n')).catch((e) => e.message)}`);
      lines.push(`${p.name} videoCodec messages: ${JSON.stringify(p.page.received.filter((m) => m.type === 'videoCodec'))}`);
    }
    lines.push(`server stats: ${JSON.stringify(await fx.server.stats().catch(() => null)).slice(0, 1500)}`);
    lines.push(`server log (${fx.server.logFile}):\n${fx.server.logTail(30)}`);
    err.message += lines.join('\n');
    throw err;
  }
}

/** Waits until `page` decodes video in `mime` and its encoders all send `sendMime`, frames rising. */
async function expectCodecs(p, { decodes, sends }, pages) {
  let last = null;
  await explained(`${p.name} decodes ${decodes} and sends ${sends}`, pages, async () => {
    const first = await poll(async () => {
      const s = await videoCodecs(p.page);
      last = s;
      const ok = s.inbound.length > 0 && s.inbound.every((i) => i.codec === decodes && i.framesDecoded > 0)
        && s.outbound.length > 0 && s.outbound.every((o) => o.codec === sends);
      return ok && s;
    }, { timeout: 30_000, what: `${p.name}: inbound video ${decodes} decoding, outbound ${sends}` })
      .catch((err) => { err.message += `\nlast stats of ${p.name}: ${JSON.stringify(last)}`; throw err; });
    await poll(async () => {
      const s = await videoCodecs(p.page);
      return s.inbound.every((i) => i.codec === decodes
        && i.framesDecoded > (first.inbound.find((f) => f.mid === i.mid)?.framesDecoded ?? 0));
    }, { timeout: 10_000, what: `${p.name}: frames decoded rising` });
  });
}

test('Chromium lists H.264 among its send and receive codecs', { timeout: 60_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const page = await openPage(fx.browser, new URL('/', fx.server.url).href, 'capabilities');
  t.after(() => page.context().close().catch(() => {}));
  const caps = await videoCapabilities(page);
  console.log(`[h264] Chromium ${fx.browser.version()} H.264 send formats: ${caps.send.filter((c) => lists([c], 'video/H264')).join('; ')}`);
  assert.ok(lists(caps.send, 'video/H264'), `send codecs: ${caps.send}`);
  assert.ok(lists(caps.recv, 'video/H264'), `receive codecs: ${caps.recv}`);
});

test('an H.264-only member and a VP8 member: the room sends H.264 while it is there, VP8 after', { timeout: 150_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `mixed-${process.pid}`;
  const vp8 = await participant(room, 'vp8', { video: '640x360', mic: 0 });
  t.after(() => closeAll(vp8));
  // Alone, the VP8 member is asked for the server's first choice.
  await explained('VP8 first', [vp8], () => poll(() => vp8.page.received.some((m) => m.type === 'videoCodec' && m.codec === 'VP8'),
    { timeout: 20_000, what: 'vp8 asked for VP8' }));

  const h264 = await participant(room, 'h264', { video: '640x360', mic: 0, codecs: 'h264' });
  t.after(() => closeAll(h264));
  const pages = [vp8, h264];
  await explained('switch to H.264', pages, () => poll(() => vp8.page.received.some((m) => m.type === 'videoCodec' && m.codec === 'H264'),
    { timeout: 20_000, what: 'vp8 asked for H264' }));
  // Both directions decoded, in H.264 only: the H.264-only page never gets VP8 (it negotiated none).
  await expectCodecs(vp8, { decodes: 'video/H264', sends: 'video/H264' }, pages);
  await expectCodecs(h264, { decodes: 'video/H264', sends: 'video/H264' }, pages);
  const h264Transceivers = await h264.page.evaluate(() => window.edgeSfu.pc.getTransceivers()
    .filter((tr) => tr.receiver.track.kind === 'video').map((tr) => tr.mid));
  assert.ok(h264Transceivers.length >= 2, `h264's video transceivers: ${h264Transceivers}`);
  const sdp = await h264.page.evaluate(() => window.edgeSfu.pc.currentLocalDescription.sdp);
  assert.ok(!/a=rtpmap:\d+ VP8\//.test(sdp), `the H.264-only page's SDP lists VP8:\n${sdp}`);

  // The H.264-only member leaves: VP8 again.
  await closeAll(h264);
  await explained('back to VP8', [vp8], () => poll(async () => {
    const asked = vp8.page.received.filter((m) => m.type === 'videoCodec').at(-1)?.codec === 'VP8';
    const s = await videoCodecs(vp8.page);
    return asked && s.outbound.length > 0 && s.outbound.every((o) => o.codec === 'video/VP8');
  }, { timeout: 30_000, what: 'vp8 asked for VP8 and sending it' }));
  assertNoPageProblems(vp8.page);
});

test('H.264 simulcast: layer sizes from the SPS, a small viewer and a large one decode different layers', { timeout: 180_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `simulcast-h264-${process.pid}`;
  const pub = await participant(room, 'pub', { video: '1280x720', mic: 0, codecs: 'h264' });
  const small = await participant(room, 'small', { camera: 0, mic: 0, codecs: 'h264' });
  const large = await participant(room, 'large', { camera: 0, mic: 0, codecs: 'h264' });
  t.after(() => closeAll(pub, small, large));
  const all = [pub, small, large];

  const trackId = await poll(() => videoTrackOf(small.page, pub.id), { what: 'small receives pub\'s camera' });
  await poll(() => videoTrackOf(large.page, pub.id), { what: 'large receives pub\'s camera' });
  await setTileWidth(small.page, pub.id, 240);
  await setTileWidth(large.page, pub.id, 1280);
  const decodesAt = (viewer, ok, what) => explained(what, all, () => poll(async () => {
    const v = await inboundVideo(viewer.page, trackId);
    return v && ok(v.frameWidth) && v.framesDecoded > 0 && v;
  }, { timeout: 45_000, what }));
  const low = await decodesAt(small, (w) => w > 0 && w <= 320, 'small decodes frames at most 320 wide');
  const high = await decodesAt(large, (w) => w >= 1280, 'large decodes frames at least 1280 wide');
  console.log(`[h264 simulcast] small decodes ${low.frameWidth}x${low.frameHeight}, large ${high.frameWidth}x${high.frameHeight}`);
  const codecs = await videoCodecs(large.page);
  assert.ok(codecs.inbound.every((i) => i.codec === 'video/H264'), JSON.stringify(codecs));

  // The SFU read each layer's size from its SPS: what the publisher encodes, not halvings of a guess. (Polled: an
  // encoder that adapts its resolution sends a new SPS, which the SFU reads at that keyframe.)
  let last = null;
  await explained('layer sizes', all, () => poll(async () => {
    const stats = await pub.page.evaluate(() => window.edgeSfu.requestStats());
    const layers = stats.publishing.find((x) => x.trackId === trackId)?.layers ?? [];
    const encoded = await pub.page.evaluate(async () => {
      const report = await window.edgeSfu.pc.getStats();
      const out = {};
      report.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid] = [s.frameWidth, s.frameHeight]; });
      return out;
    });
    last = { sfu: layers.map((l) => [l.rid, l.width, l.height]), encoder: encoded };
    return layers.length === 3 && layers.every((l) => l.width > 0 && `${[l.width, l.height]}` === `${encoded[l.rid]}`);
  }, { timeout: 20_000, what: 'the SFU\'s layer sizes of pub\'s track equal the encoder\'s' })
    .catch((err) => { err.message += `\nlast: ${JSON.stringify(last)}`; throw err; }));
  console.log(`[h264 simulcast] layer sizes from the SPS ${JSON.stringify(last)}`);
  assertNoPageProblems(pub.page, small.page, large.page);
});
