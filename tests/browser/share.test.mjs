// share.html: a viewer waits under a short ID, a sender shares its screen to it, the viewer decodes the
// frames full-size, and goes back to waiting when the sender stops.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumPresent, skipWithoutChromium, serverAndBrowser, joinRoom, openPage, poll, describePage, remoteMedia,
  assertNoPageProblems,
} from './harness.mjs';


const fx = serverAndBrowser('edge-sfu-share');

const ID_RE = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$/;

async function viewerDecodes(viewer, senderLabel) {
  try {
    const first = await poll(async () => {
      const v = (await remoteMedia(viewer)).find((m) => m.kind === 'video' && m.source === 'screen');
      return v && v.framesDecoded > 0 ? v : null;
    }, { timeout: 30_000, what: `viewer decodes ${senderLabel}'s screen` });
    await poll(async () => {
      const v = (await remoteMedia(viewer)).find((m) => m.trackId === first.trackId);
      return v && v.framesDecoded > first.framesDecoded;
    }, { timeout: 10_000, what: 'viewer frames rising' });
    await poll(() => viewer.evaluate(() => document.body.dataset.state === 'viewing' && document.querySelector('#share-video').videoWidth > 0),
      { timeout: 10_000, what: 'viewer shows the screen in #share-video' });
  } catch (err) {
    err.message += `\nviewer: ${await describePage(viewer)}`;
    throw err;
  }
}

test('screen sharing to a waiting device through share.html', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;

  // The viewer: a random, easy-to-type ID, waiting in room share-<ID>.
  const viewer = await openPage(fx.browser, new URL('/share.html', fx.server.url).href, 'viewer');
  await poll(() => viewer.evaluate(() => window.edgeSfu?.state === 'joined'), { timeout: 15_000, what: 'viewer joined' });
  const id = (await viewer.textContent('#share-id')).trim();
  assert.match(id, ID_RE);
  assert.equal(await viewer.evaluate(() => window.edgeSfu.room), `share-${id}`);
  assert.equal(await viewer.evaluate(() => document.body.dataset.state), 'waiting');
  const s0 = await fx.server.stats();
  assert.equal(s0.peers, 1, JSON.stringify(s0));

  // The sender: another tab on /share.html, types the ID, clicks "Start sharing".
  const sender = await openPage(fx.browser, new URL('/share.html', fx.server.url).href, 'sender');
  await poll(() => sender.evaluate(() => window.edgeSfu?.state === 'joined'), { timeout: 15_000, what: 'sender page ready' });
  await sender.fill('#wait-view .share-input', id.toLowerCase());
  await sender.click('#wait-view button[type="submit"]');
  try {
    await poll(() => sender.evaluate(() => document.body.dataset.state === 'sending'), { timeout: 15_000, what: 'sender sharing' });
  } catch (err) {
    err.message += `\nsender: ${await describePage(sender)}`;
    throw err;
  }
  assert.equal(await sender.evaluate(() => window.edgeSfu.room), `share-${id}`);
  await viewerDecodes(viewer, 'sender');
  // Full-size: the video fills the viewer's window.
  const box = await viewer.locator('#share-video').boundingBox();
  const vp = viewer.viewportSize();
  assert.ok(box.width >= vp.width * 0.95, `video ${box.width}px wide in a ${vp.width}px window`);
  // The viewer publishes nothing.
  assert.deepEqual(await viewer.evaluate(() => window.edgeSfu.pc.getSenders().filter((s) => s.track).length), 0);
  assert.equal((await fx.server.stats()).peers, 2);

  // A third device cannot join the pair (capacity 2).
  const intruder = await openPage(fx.browser, new URL(`/share.html?id=${id}`, fx.server.url).href, 'intruder');
  await intruder.click('#share-start');
  await intruder.waitForSelector('#share-error:not([hidden])', { timeout: 15_000 });
  assert.match(await intruder.textContent('#share-error'), /already showing/);
  await intruder.context().close();

  // Stop: the viewer goes back to waiting under the same ID.
  await sender.click('#share-stop');
  await poll(() => viewer.evaluate(() => document.body.dataset.state === 'waiting'), { timeout: 10_000, what: 'viewer back to waiting' });
  assert.equal((await viewer.textContent('#share-id')).trim(), id);

  // And it can be shared to again, this time from a sender link (?id=).
  await sender.context().close();
  const sender2 = await openPage(fx.browser, new URL(`/share.html?id=${id}`, fx.server.url).href, 'sender2');
  assert.equal(await sender2.inputValue('#share-input'), id);
  await sender2.click('#share-start');
  await poll(() => sender2.evaluate(() => document.body.dataset.state === 'sending'), { timeout: 15_000, what: 'sender2 sharing' });
  await viewerDecodes(viewer, 'sender2');
  await sender2.context().close();
  await poll(() => viewer.evaluate(() => document.body.dataset.state === 'waiting'), { timeout: 10_000, what: 'viewer waiting after sender2 closed' });
  await poll(async () => (await fx.server.stats()).peers === 1, { timeout: 10_000, what: '/api/stats peers == 1' });
  assertNoPageProblems(viewer, sender, sender2);
});
