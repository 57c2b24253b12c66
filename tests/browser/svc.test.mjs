// Scalable video (SVC, issue 17) through the room page: a server whose rooms use VP9 (`--video-codecs vp9`) takes a
// Chromium camera sent as one L3T3_KEY encoding (three spatial layers, 320x180 to 1280x720, in one RTP stream) and
// forwards each viewer the spatial layers its tile wants: a small tile decodes the lowest layer, a large one the top.
// An AV1 room (`--video-codecs av1`) carries a camera sent as L1T3 (temporal layers only) to its viewers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describePage, launchChromium, openPage, poll, roomUrl, skipWithoutChromium, startServer, waitJoined,
} from './harness.mjs';
import { inboundVideo, setTileWidth, videoTrackOf } from './quality.mjs';

/** Starts a server whose rooms use `codec` for video, and a Chromium; both stop after the test `t`. */
async function codecRoom(t, codec) {
  const server = await startServer({ name: `edge-sfu-svc-${codec}`, args: ['--video-codecs', codec] });
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close().catch(() => {});
    await server.stop();
  });
  return { server, browser };
}

/** Opens participant `name` in `room` with the room page's URL options. */
async function participant(fx, room, name, options = {}) {
  const u = new URL(roomUrl(fx.server.url, room, name));
  for (const [k, v] of Object.entries(options)) u.searchParams.set(k, String(v));
  const page = await openPage(fx.browser, u.href, `${room}/${name}`);
  const id = await waitJoined(page);
  return { page, id, name };
}

/** The codec and scalability mode of `page`'s outbound camera, and the size of its top layer. */
function outboundCamera(page) {
  return page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    let out = null;
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
    });
    return out && {
      mimeType: codecs.get(out.codecId) ?? null,
      scalabilityMode: out.scalabilityMode ?? null,
      frameWidth: out.frameWidth ?? 0,
      framesEncoded: out.framesEncoded ?? 0,
    };
  });
}

/** The codec `page` receives track `trackId` in. */
function inboundCodec(page, trackId) {
  return page.evaluate(async (trackId) => {
    const c = window.edgeSfu;
    const rt = c.remoteTracks.get(trackId);
    const report = await c.pc.getStats(rt.track);
    let mime = null;
    const codecs = new Map();
    let codecId = null;
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'inbound-rtp' && s.kind === 'video') codecId = s.codecId;
    });
    mime = codecs.get(codecId) ?? null;
    return mime;
  }, trackId);
}

/** Waits until `viewer` decodes new frames of `trackId` whose width passes `ok`; returns its counters. */
async function decodesAt(fx, viewer, trackId, ok, what, pages) {
  const start = await inboundVideo(viewer.page, trackId);
  try {
    return await poll(async () => {
      const v = await inboundVideo(viewer.page, trackId);
      return v && ok(v.frameWidth) && v.framesDecoded > (start?.framesDecoded ?? 0) + 10 && v;
    }, { timeout: 45_000, what });
  } catch (err) {
    const lines = [];
    for (const p of pages) lines.push(`${p.name}: ${await describePage(p.page)}`);
    lines.push(`server log (${fx.server.logFile}):\n${fx.server.logTail(30)}`);
    err.message += `\n${lines.join('\n')}`;
    throw err;
  }
}

test('VP9 L3T3_KEY: a small tile decodes the lowest spatial layer, a large one the top', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const fx = await codecRoom(t, 'vp9');
  const room = `svc-vp9-${process.pid}`;
  const pub = await participant(fx, room, 'pub', { video: '1280x720', mic: 0, svc: 'L3T3_KEY' });
  const small = await participant(fx, room, 'small', { camera: 0, mic: 0 });
  const large = await participant(fx, room, 'large', { camera: 0, mic: 0 });
  const all = [pub, small, large];

  const trackId = await poll(() => videoTrackOf(small.page, pub.id), { what: 'small receives pub\'s camera' });
  await poll(() => videoTrackOf(large.page, pub.id), { what: 'large receives pub\'s camera' });
  await setTileWidth(small.page, pub.id, 240);
  const largeSize = await setTileWidth(large.page, pub.id, 1280);
  assert.ok(largeSize[0] >= 1270, `the large tile draws its video ${largeSize[0]} wide`);

  const low = await decodesAt(fx, small, trackId, (w) => w > 0 && w <= 320, 'small decodes frames at most 320 wide', all);
  const high = await decodesAt(fx, large, trackId, (w) => w >= 1280, 'large decodes frames at least 1280 wide', all);
  console.log(`[svc] VP9: small tile decodes ${low.frameWidth}x${low.frameHeight}, large ${high.frameWidth}x${high.frameHeight}`);
  const sent = await outboundCamera(pub.page);
  assert.equal(sent.mimeType, 'video/VP9', JSON.stringify(sent));
  assert.equal(sent.scalabilityMode, 'L3T3_KEY', JSON.stringify(sent));
  assert.equal(await inboundCodec(small.page, trackId), 'video/VP9');

  // The small viewer's tile grows: it moves up to the top layer (at a keyframe the SFU asks for).
  await setTileWidth(small.page, pub.id, 1280);
  await decodesAt(fx, small, trackId, (w) => w >= 1280, 'small, grown, decodes frames at least 1280 wide', all);
  // And the large one's shrinks: down to the lowest at the next picture.
  await setTileWidth(large.page, pub.id, 240);
  await decodesAt(fx, large, trackId, (w) => w > 0 && w <= 320, 'large, shrunk, decodes frames at most 320 wide', all);
  for (const p of all) await p.page.context().close().catch(() => {});
});

test('AV1 L1T3: viewers decode a camera sent with temporal layers', { timeout: 90_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const fx = await codecRoom(t, 'av1');
  const room = `svc-av1-${process.pid}`;
  const pub = await participant(fx, room, 'pub', { video: '640x360', mic: 0, svc: 'L1T3' });
  const viewer = await participant(fx, room, 'viewer', { camera: 0, mic: 0 });
  const all = [pub, viewer];
  const trackId = await poll(() => videoTrackOf(viewer.page, pub.id), { what: 'viewer receives pub\'s camera' });
  const got = await decodesAt(fx, viewer, trackId, (w) => w >= 640, 'viewer decodes 640-wide frames', all);
  console.log(`[svc] AV1: viewer decodes ${got.frameWidth}x${got.frameHeight}, ${got.framesDecoded} frames`);
  const sent = await outboundCamera(pub.page);
  assert.equal(sent.mimeType, 'video/AV1', JSON.stringify(sent));
  assert.equal(sent.scalabilityMode, 'L1T3', JSON.stringify(sent));
  assert.equal(await inboundCodec(viewer.page, trackId), 'video/AV1');
  for (const p of all) await p.page.context().close().catch(() => {});
});
