// The room page against the real server: two, then three participants see and hear each other; a
// participant who leaves disappears from the others' pages and from /api/stats.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumPresent, skipWithoutChromium, serverAndBrowser, joinRoom, openPage, waitJoined,
  expectMediaFrom, roomUrl, poll, describePage, assertNoPageProblems,
} from './harness.mjs';

const room = `kitchen-${process.pid}`;
const pages = {}; // name -> {page, id}

const fx = serverAndBrowser('edge-sfu-room');

async function join(name) {
  pages[name] = await joinRoom(fx, room, name);
  return pages[name];
}

test('two, then three participants decode each other\'s video and receive audio', { timeout: 150_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const ana = await join('ana');
  const bob = await join('bob');
  assert.notEqual(ana.id, bob.id);
  await Promise.all([
    expectMediaFrom(ana.page, [bob.id], { label: 'ana' }),
    expectMediaFrom(bob.page, [ana.id], { label: 'bob' }),
  ]);
  // Each page shows one tile per participant.
  for (const p of [ana, bob]) {
    const tiles = await p.page.$$eval('.tile[data-source="camera"]', (els) => els.map((e) => e.dataset.peerId).sort());
    assert.deepEqual(tiles, [String(ana.id), String(bob.id)].sort());
  }

  const cy = await join('cy');
  await Promise.all([
    expectMediaFrom(ana.page, [bob.id, cy.id], { label: 'ana' }),
    expectMediaFrom(bob.page, [ana.id, cy.id], { label: 'bob' }),
    expectMediaFrom(cy.page, [ana.id, bob.id], { label: 'cy' }),
  ]);
  const stats = await fx.server.stats();
  assert.equal(stats.peers, 3, `/api/stats: ${JSON.stringify(stats)}`);
  assert.ok(stats.forwardedPackets > 0, `/api/stats: ${JSON.stringify(stats)}`);
  assertNoPageProblems(ana.page, bob.page, cy.page);
});

test('a participant who leaves disappears from the others within seconds', { timeout: 60_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const { ana, bob, cy } = pages;
  if (!ana || !bob || !cy) {
    t.skip('needs the three participants of the previous test');
    return;
  }
  const before = await fx.server.stats();
  assert.equal(before.peers, 3);
  // Record, at the moment each page handles peerLeft, whether cy's tiles are already gone.
  for (const p of [ana, bob]) {
    await p.page.evaluate((id) => {
      window.edgeSfu.addEventListener('peerleft', (e) => {
        if (e.detail.peerId === id) window.__tilesAtPeerLeft = document.querySelectorAll(`.tile[data-peer-id="${id}"]`).length;
      });
    }, cy.id);
  }
  await cy.page.click('#leave');
  await cy.page.waitForSelector('#left-view:not([hidden])', { timeout: 5000 });
  for (const [name, p] of [['ana', ana], ['bob', bob]]) {
    try {
      await poll(() => p.page.evaluate((id) => document.querySelectorAll(`[data-peer-id="${id}"]`).length === 0, cy.id),
        { timeout: 5000, what: `${name}: tiles and audio of cy (${cy.id}) removed` });
    } catch (err) {
      err.message += `\n${name}: ${await describePage(p.page)}`;
      throw err;
    }
  }
  for (const p of [ana, bob]) assert.equal(await p.page.evaluate(() => window.__tilesAtPeerLeft), 0, 'tiles removed when peerLeft is handled');
  await poll(async () => (await fx.server.stats()).peers === 2, { timeout: 5000, what: '/api/stats peers == 2' });
  // The two who stayed still see each other.
  await Promise.all([
    expectMediaFrom(ana.page, [bob.id], { label: 'ana' }),
    expectMediaFrom(bob.page, [ana.id], { label: 'bob' }),
  ]);
  // Closing a tab (no leave message) also removes the participant.
  await bob.page.context().close();
  await poll(() => ana.page.evaluate((id) => document.querySelectorAll(`[data-peer-id="${id}"]`).length === 0, bob.id),
    { timeout: 10_000, what: `ana: bob (${bob.id}) removed after his tab closed` });
  await poll(async () => (await fx.server.stats()).peers === 1, { timeout: 10_000, what: '/api/stats peers == 1' });
  assertNoPageProblems(ana.page, cy.page);
});
