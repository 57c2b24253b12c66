// Media quality (issue 6) through the room page: the camera goes out as three simulcast layers and each viewer
// decodes the one that fits the tile it draws it in (reported with `tileSize`); the page's tile reports follow
// resizes, hiding and scrolling; a muted microphone stops at the publisher and at the SFU; the active speaker's tile
// is highlighted and the highlight moves when speakers mute; the Stats button overlays the SFU's counters.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, describePage, joinRoom, openPage, poll, remoteMedia, roomUrl, serverAndBrowser,
  skipWithoutChromium, waitJoined,
} from './harness.mjs';
import {
  inboundVideo, outboundMedia, publisherLayers, renderedSize, senderActive, setTileWidth, stillFor, tileOf, videoTrackOf,
} from './quality.mjs';

const fx = serverAndBrowser('edge-sfu-quality');

/** Opens participant `name` in `room` with the room page's URL options (`video`, `mic`, `camera`, `simulcast`). */
async function participant(room, name, options = {}) {
  const u = new URL(roomUrl(fx.server.url, room, name));
  for (const [k, v] of Object.entries(options)) u.searchParams.set(k, String(v));
  const page = await openPage(fx.browser, u.href, `${room}/${name}`);
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
      const hints = p.page.received.filter((m) => ['layerHint', 'activeSpeaker', 'mediaStats'].includes(m.type)).slice(-4);
      if (hints.length) lines.push(`${p.name} last received: ${JSON.stringify(hints)}`);
    }
    lines.push(`server log (${fx.server.logFile}):\n${fx.server.logTail(30)}`);
    err.message += lines.join('\n');
    throw err;
  }
}

test('tileSize reports follow the rendered size: resize, display:none, scrolled out of view', { timeout: 90_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `tiles-${process.pid}`;
  const pub = await participant(room, 'pub', { video: '640x360', mic: 0 });
  const viewer = await participant(room, 'viewer', { camera: 0, mic: 0 });
  t.after(() => closeAll(pub, viewer));
  const trackId = await poll(() => videoTrackOf(viewer.page, pub.id), { what: 'viewer receives pub\'s camera' });
  const reports = () => viewer.page.sent.filter((m) => m.type === 'tileSize' && m.trackId === trackId);
  const lastReport = () => reports().at(-1) ?? null;
  const expectReport = ([w, h], what) => explained(what, [viewer], () => poll(() => {
    const r = lastReport();
    return r && r.width === w && r.height === h;
  }, { timeout: 10_000, what: `${what}: last tileSize ${w}x${h} (last: ${JSON.stringify(lastReport())})` }));

  // The first report is the video as laid out, in device pixels.
  const laidOut = await renderedSize(viewer.page, pub.id);
  assert.ok(laidOut[0] > 0 && laidOut[1] > 0, `tile laid out at ${laidOut}`);
  await expectReport(laidOut, 'initial report');
  const first = reports()[0];
  assert.deepEqual(Object.keys(first).filter((k) => k !== 'at').sort(), ['height', 'trackId', 'type', 'width']);

  const size400 = await setTileWidth(viewer.page, pub.id, 400);
  assert.ok(Math.abs(size400[0] - 400) <= 2 && Math.abs(size400[1] - 225) <= 2, `a 400x225 tile draws its video at ${size400}`);
  await expectReport(size400, 'resized to 400 CSS px');
  await viewer.page.evaluate((sel) => { document.querySelector(sel).style.display = 'none'; }, tileOf(pub.id));
  await expectReport([0, 0], 'display: none');
  await viewer.page.evaluate((sel) => { document.querySelector(sel).style.display = ''; }, tileOf(pub.id));
  await expectReport(size400, 'shown again');
  // Out of view without changing size: moved far below the viewport.
  await viewer.page.evaluate((sel) => {
    const tile = document.querySelector(sel);
    tile.style.position = 'fixed';
    tile.style.left = '0';
    tile.style.top = '300vh';
  }, tileOf(pub.id));
  await expectReport([0, 0], 'scrolled out of view');
  await viewer.page.evaluate((sel) => {
    const tile = document.querySelector(sel);
    tile.style.position = '';
    tile.style.top = '';
    tile.style.left = '';
  }, tileOf(pub.id));
  await expectReport(size400, 'back in view');
  // A burst of resizes ends on its last size.
  await viewer.page.evaluate(async (sel) => {
    const tile = document.querySelector(sel);
    for (let w = 300; w <= 390; w += 10) {
      tile.style.width = `${w}px`;
      tile.style.height = `${Math.round((w * 9) / 16)}px`;
      await new Promise((r) => requestAnimationFrame(() => r()));
    }
  }, tileOf(pub.id));
  await expectReport(await renderedSize(viewer.page, pub.id), 'after a burst of resizes');
  // Only changes are sent.
  const sizes = reports().map((r) => `${r.width}x${r.height}`);
  for (let i = 1; i < sizes.length; i++) assert.notEqual(sizes[i], sizes[i - 1], `repeated tileSize report: ${sizes.join(', ')}`);
  assertNoPageProblems(pub.page, viewer.page);
});

test('simulcast: a small tile gets the low layer, a large one the high layer; shrinking it switches down and layer hints pause the unused layers', { timeout: 180_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `simulcast-${process.pid}`;
  const pub = await participant(room, 'pub', { video: '1280x720', mic: 0 });
  const small = await participant(room, 'small', { camera: 0, mic: 0 });
  const large = await participant(room, 'large', { camera: 0, mic: 0 });
  t.after(() => closeAll(pub, small, large));
  const all = [pub, small, large];

  // The publisher has three encodings, lowest first. (Which of them it sends depends on the SFU's layer hints: the
  // viewers' first tiles, laid out at about 450 px, take only q and h.)
  const encodings = await pub.page.evaluate(() => window.edgeSfu.pc.getTransceivers()
    .find((tr) => tr.sender.track?.kind === 'video').sender.getParameters().encodings.map((e) => e.rid));
  assert.deepEqual(encodings, ['q', 'h', 'f']);

  const trackId = await poll(() => videoTrackOf(small.page, pub.id), { what: 'small receives pub\'s camera' });
  await poll(() => videoTrackOf(large.page, pub.id), { what: 'large receives pub\'s camera' });
  const smallSize = await setTileWidth(small.page, pub.id, 240);
  const largeSize = await setTileWidth(large.page, pub.id, 1280);
  const reported = (viewer, size) => poll(() => viewer.page.evaluate(
    ({ id, size }) => `${window.edgeSfu.reportedTileSize(id)}` === `${size}`, { id: trackId, size },
  ), { timeout: 10_000, what: `${viewer.name} reported its ${size.join('x')} tile` });
  await reported(small, smallSize);
  await reported(large, largeSize);
  assert.ok(largeSize[0] >= 1270, `the large tile draws its video ${largeSize[0]} wide`);

  const decodesAt = async (viewer, ok, what, timeout) => explained(what, all, async () => {
    const start = await inboundVideo(viewer.page, trackId);
    return poll(async () => {
      const v = await inboundVideo(viewer.page, trackId);
      return v && ok(v.frameWidth) && v.framesDecoded > (start?.framesDecoded ?? 0) && v;
    }, { timeout, what });
  });
  const low = await decodesAt(small, (w) => w > 0 && w <= 320, 'small decodes frames at most 320 wide', 30_000);
  const started = Date.now();
  const high = await decodesAt(large, (w) => w >= 1280, 'large decodes frames at least 1280 wide', 45_000);
  console.log(`[simulcast] small tile decodes ${low.frameWidth}x${low.frameHeight}; large tile ${high.frameWidth}x${high.frameHeight} after ${((Date.now() - started) / 1000).toFixed(1)}s more`);
  // The publisher sends all three layers now, the top one at the captured 1280x720.
  const layers = await publisherLayers(pub.page);
  assert.deepEqual(layers.map((l) => l.rid), ['q', 'h', 'f'], JSON.stringify(layers));
  assert.ok(layers.every((l) => l.packetsSent > 0) && layers[2].frameWidth >= 1280, `pub's layers: ${JSON.stringify(layers)}`);

  // The SFU's view of the same legs, and the page's Stats overlay.
  const stats = await small.page.evaluate(() => window.edgeSfu.requestStats());
  const leg = stats.receiving.find((l) => l.trackId === trackId);
  assert.ok(leg, `small's mediaStats has a leg for ${trackId}: ${JSON.stringify(stats)}`);
  assert.equal(leg.kind, 'video');
  assert.equal(leg.layer, 0, `small's leg: ${JSON.stringify(leg)}`);
  assert.deepEqual(leg.tile, smallSize);
  assert.ok(leg.bitrateBps > 0 && leg.packets > 0, `small's leg: ${JSON.stringify(leg)}`);
  const pubStats = await pub.page.evaluate(() => window.edgeSfu.requestStats());
  const publication = pubStats.publishing.find((p) => p.trackId === trackId);
  assert.ok(publication, `pub's mediaStats lists ${trackId}: ${JSON.stringify(pubStats)}`);
  assert.deepEqual(publication.layers.map((l) => l.rid), ['q', 'h', 'f']);

  await small.page.click('#stats-toggle');
  assert.equal(await small.page.getAttribute('#stats-toggle', 'aria-pressed'), 'true');
  await poll(() => small.page.evaluate((sel) => {
    const text = document.querySelector(`${sel} .stats-overlay`)?.textContent ?? '';
    return /^L0\b/.test(text) && /kbit\/s/.test(text) && text;
  }, tileOf(pub.id)), { timeout: 10_000, what: 'small\'s Stats overlay on pub\'s tile shows L0 and a rate' });
  await pub.page.click('#stats-toggle');
  await poll(() => pub.page.evaluate((id) => {
    const text = document.querySelector(`.tile[data-peer-id="${id}"][data-local="true"] .stats-overlay`)?.textContent ?? '';
    return ['q', 'h', 'f'].every((rid) => new RegExp(`^${rid} `, 'm').test(text)) && text;
  }, pub.id), { timeout: 10_000, what: 'pub\'s Stats overlay on its own tile lists layers q, h and f' });
  await small.page.click('#stats-toggle');
  await poll(() => small.page.evaluate(() => document.querySelectorAll('.stats-overlay').length === 0), { what: 'overlays gone when Stats is off' });

  // The large tile shrinks: the SFU switches it down (at the low layer's next keyframe).
  await reported(large, await setTileWidth(large.page, pub.id, 240));
  await decodesAt(large, (w) => w > 0 && w <= 320, 'large, shrunk to 240 px, decodes frames at most 320 wide', 20_000);

  // Nobody takes h and f now: the SFU's layerHint makes pub's browser stop encoding them.
  const encodingsAre = (want, what) => explained(what, all, () => poll(
    async () => `${await senderActive(pub.page, 'video')}` === `${want}`,
    { timeout: 20_000, what: `${what}: pub's video encodings active ${want}` },
  ));
  await encodingsAre([true, false, false], 'only the low layer is taken');
  const lastHint = () => pub.page.received.filter((m) => m.type === 'layerHint').at(-1);
  assert.deepEqual(lastHint().active, [true, false, false], `last layerHint ${JSON.stringify(lastHint())}`);
  const fSent = async () => (await publisherLayers(pub.page)).find((l) => l.rid === 'f')?.packetsSent ?? null;
  await poll(() => stillFor(fSent, 1000), { timeout: 10_000, what: 'pub sends nothing on layer f' });
  // Camera off: nothing at all is sent; on again: back to what the hint asks for.
  await pub.page.click('#camera');
  await poll(() => pub.page.getAttribute('#camera', 'data-state').then((s) => s === 'off'), { timeout: 10_000, what: 'camera off' });
  await encodingsAre([false, false, false], 'camera off');
  await pub.page.click('#camera');
  await poll(() => pub.page.getAttribute('#camera', 'data-state').then((s) => s === 'on'), { timeout: 10_000, what: 'camera on' });
  await encodingsAre([true, false, false], 'camera on again, only the low layer taken');
  await decodesAt(small, (w) => w > 0 && w <= 320, 'small decodes pub\'s camera again once it is back on', 20_000);
  // The tile grows again: the layers resume and the viewer gets the high one.
  await reported(large, await setTileWidth(large.page, pub.id, 1280));
  await encodingsAre([true, true, true], 'a 1280 px tile again');
  await decodesAt(large, (w) => w >= 1280, 'large, grown back to 1280 px, decodes frames at least 1280 wide', 45_000);
  assertNoPageProblems(pub.page, small.page, large.page);
});

test('with ?simulcast=0 the camera goes out as one full-size layer', { timeout: 90_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `single-${process.pid}`;
  const pub = await participant(room, 'pub', { video: '1280x720', mic: 0, simulcast: 0 });
  const viewer = await participant(room, 'viewer', { camera: 0, mic: 0 });
  t.after(() => closeAll(pub, viewer));
  const trackId = await poll(() => videoTrackOf(viewer.page, pub.id), { what: 'viewer receives pub\'s camera' });
  const encodings = await pub.page.evaluate(() => window.edgeSfu.pc.getTransceivers()
    .find((tr) => tr.sender.track?.kind === 'video').sender.getParameters().encodings);
  assert.equal(encodings.length, 1, JSON.stringify(encodings));
  assert.equal(encodings[0].rid, undefined);
  assert.equal(encodings[0].scaleResolutionDownBy ?? 1, 1);
  // Even a small tile gets the one layer there is. One VP8 stream starts at a reduced size for the browser's start
  // bitrate and grows a step at a time (480, 640, 960, 1280 wide) as its quality scaler sees room: allow for that.
  await setTileWidth(viewer.page, pub.id, 240);
  await explained('single layer', [pub, viewer], () => poll(async () => (await inboundVideo(viewer.page, trackId))?.frameWidth >= 1280,
    { timeout: 60_000, what: 'viewer decodes pub\'s camera 1280 wide' }));
  const stats = await pub.page.evaluate(() => window.edgeSfu.requestStats());
  const publication = stats.publishing.find((p) => p.trackId === trackId);
  assert.equal(publication?.layers.length, 1, `pub's mediaStats: ${JSON.stringify(stats)}`);
  assertNoPageProblems(pub.page, viewer.page);
});

test('muting the microphone stops its packets at the publisher and at the viewer; unmuting resumes them', { timeout: 90_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `mute-${process.pid}`;
  const ana = await participant(room, 'ana', { camera: 0 });
  const bob = await participant(room, 'bob', { camera: 0, mic: 0 });
  t.after(() => closeAll(ana, bob));
  const received = async () => (await remoteMedia(bob.page)).find((m) => m.peerId === ana.id && m.kind === 'audio')?.packetsReceived ?? null;
  const sent = async () => (await outboundMedia(ana.page)).find((m) => m.kind === 'audio')?.packetsSent ?? null;
  const rising = (sample, what) => explained(what, [ana, bob], async () => {
    const first = await poll(sample, { what: `${what} (first sample)` });
    return poll(async () => (await sample()) > first, { timeout: 10_000, what });
  });

  await rising(received, 'bob receives ana\'s audio');
  await rising(sent, 'ana sends audio');
  await ana.page.click('#mic');
  assert.equal(await ana.page.getAttribute('#mic', 'data-state'), 'off');
  await explained('muted', [ana, bob], () => poll(() => stillFor(sent, 2000), { timeout: 15_000, what: 'ana\'s outbound audio packetsSent still for 2 s' }));
  await explained('muted', [ana, bob], () => poll(() => stillFor(received, 2000), { timeout: 15_000, what: 'bob\'s inbound audio packetsReceived from ana still for 2 s' }));
  assert.equal(await ana.page.evaluate(() => window.edgeSfu.pc.getTransceivers()
    .find((tr) => tr.sender.track?.kind === 'audio').sender.getParameters().encodings.every((e) => e.active === false)), true,
  'the muted sender\'s encodings are inactive');
  assert.ok(ana.page.sent.some((m) => m.type === 'mute' && m.muted === true), 'a mute message went to the SFU');

  await ana.page.click('#mic');
  assert.equal(await ana.page.getAttribute('#mic', 'data-state'), 'on');
  await rising(sent, 'ana sends audio again after unmuting');
  await rising(received, 'bob receives ana\'s audio again after unmuting');
  assertNoPageProblems(ana.page, bob.page);
});

test('the active speaker\'s tile is highlighted, and the highlight moves when speakers mute', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const room = `speaker-${process.pid}`;
  // Every fake microphone beeps; cy stays muted and watches.
  const ana = await participant(room, 'ana', { camera: 0 });
  const bob = await participant(room, 'bob', { camera: 0 });
  const cy = await participant(room, 'cy', { camera: 0 });
  t.after(() => closeAll(ana, bob, cy));
  const all = [ana, bob, cy];
  for (const p of all) {
    await poll(async () => (await remoteMedia(p.page)).filter((m) => m.kind === 'audio' && m.packetsReceived > 0).length === 2,
      { timeout: 30_000, what: `${p.name} receives the two others' audio` });
  }
  const highlighted = (p) => p.page.evaluate(() => [...document.querySelectorAll('.tile.speaking')].map((e) => Number(e.dataset.peerId)));
  const expectSpeaker = (who, what) => explained(what, all, () => poll(async () => {
    const [seenByCy, seenByWho] = [await highlighted(cy), await highlighted(who)];
    return seenByCy.length === 1 && seenByCy[0] === who.id && seenByWho.length === 1 && seenByWho[0] === who.id;
  }, { timeout: 15_000, what: `${what}: only ${who.name}'s tile (${who.id}) highlighted on cy's and on ${who.name}'s own page` }));
  const mic = async (p, on) => {
    if ((await p.page.getAttribute('#mic', 'data-state')) !== (on ? 'on' : 'off')) await p.page.click('#mic');
    assert.equal(await p.page.getAttribute('#mic', 'data-state'), on ? 'on' : 'off');
  };

  await mic(cy, false);
  await mic(bob, false);
  await expectSpeaker(ana, 'ana speaks, bob and cy are muted');
  await mic(bob, true);
  await mic(ana, false);
  await expectSpeaker(bob, 'ana muted, bob speaks');
  await mic(ana, true);
  await mic(bob, false);
  await expectSpeaker(ana, 'bob muted, ana speaks again');
  const last = cy.page.received.filter((m) => m.type === 'activeSpeaker').at(-1);
  assert.equal(last.peerId, ana.id);
  assert.match(last.trackId, new RegExp(`^${ana.id}:`));
  assertNoPageProblems(ana.page, bob.page, cy.page);
});
