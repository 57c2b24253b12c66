// The room page under the admin API: a member whose microphone an admin mutes sees its mic button
// go off and a notice, and a member an admin removes sees the reason while the others see it leave.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipWithoutChromium, serverAndBrowser, joinRoom, poll, assertNoPageProblems } from './harness.mjs';

const room = `board-${process.pid}`;
const fx = serverAndBrowser('edge-sfu-admin');

async function api(method, path, body) {
  const res = await fetch(new URL(path, fx.server.url), {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

test('an admin mute and an admin removal show on the pages', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const ana = await joinRoom(fx, room, 'ana');
  const bob = await joinRoom(fx, room, 'bob');
  const micOf = async (id) => {
    const { body } = await api('GET', `/api/rooms/${room}`);
    return body.members.find((m) => m.id === id)?.tracks.find((tr) => tr.source === 'mic');
  };
  await poll(async () => !!(await micOf(ana.id)), { timeout: 20_000, what: "ana's microphone published" });
  const mic = await micOf(ana.id);

  const muted = await api('POST', `/api/rooms/${room}/members/${ana.id}/mute`, { trackId: mic.id, muted: true });
  assert.equal(muted.status, 200, JSON.stringify(muted.body));
  assert.equal(muted.body.adminMuted, true);
  await ana.page.waitForSelector('#mic[data-state="off"]', { timeout: 10_000 });
  await poll(() => ana.page.evaluate(() => [...document.querySelectorAll('.chat-line.system')]
    .some((li) => li.textContent.includes('administrator muted your microphone'))), { timeout: 10_000, what: 'the mute notice' });
  assert.equal(await ana.page.evaluate(() => window.edgeSfu.isMuted('mic')), true);

  const removed = await api('DELETE', `/api/rooms/${room}/members/${bob.id}?reason=${encodeURIComponent('time is up')}`);
  assert.equal(removed.status, 204);
  await bob.page.waitForSelector('#left-view:not([hidden])', { timeout: 10_000 });
  assert.equal(await bob.page.$eval('#left-title', (e) => e.textContent), 'You were removed from the room');
  assert.match(await bob.page.$eval('#left-detail', (e) => e.textContent), /time is up/);
  await poll(() => ana.page.evaluate((id) => document.querySelectorAll(`[data-peer-id="${id}"]`).length === 0, bob.id),
    { timeout: 10_000, what: "bob's tile gone from ana's page" });
  await poll(async () => (await fx.server.stats()).peers === 1, { timeout: 10_000, what: '/api/stats peers == 1' });
  assertNoPageProblems(ana.page);
});
