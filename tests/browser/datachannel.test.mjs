// Any data channel, relayed, between two Chromium pages through the client library
// (`openChannel`, the `datachannel` event): an unordered, unreliable "cursor" channel with text and
// a binary channel both ways arrive with their label, options and sender, and a message past the
// SFU's size limit is refused with an `error`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipWithoutChromium, serverAndBrowser, joinRoom, poll, describePage, assertNoPageProblems,
} from './harness.mjs';

const fx = serverAndBrowser('edge-sfu-datachannel');
const room = `datachannel-${process.pid}`;

/** Makes the page record every relay the SFU opens to it and what arrives on it. */
async function recordRelays(page) {
  await page.evaluate(() => {
    window.__relays = [];
    window.edgeSfu.addEventListener('datachannel', ({ detail }) => {
      const { channel } = detail;
      const entry = {
        label: detail.label,
        peerId: detail.peerId,
        peerName: detail.peer?.name ?? null,
        ordered: channel.ordered,
        maxRetransmits: channel.maxRetransmits,
        sid: channel.id,
        messages: [],
      };
      window.__relays.push(entry);
      channel.onmessage = (ev) => entry.messages.push(
        typeof ev.data === 'string' ? { text: ev.data } : { bytes: [...new Uint8Array(ev.data)] },
      );
    });
  });
}

/** Opens a channel on the page and waits until it is open (the SFU took it). */
async function openOwn(page, label, options) {
  await page.evaluate(({ label, options }) => new Promise((resolve, reject) => {
    const channel = window.edgeSfu.openChannel(label, options);
    window.__own = { ...window.__own, [label]: channel };
    channel.onerror = (ev) => reject(new Error(`channel ${label}: ${ev.error?.message}`));
    channel.onopen = () => resolve();
  }), { label, options });
}

/** Sends `messages` (strings, or arrays of bytes) on the page's channel `label`. */
async function send(page, label, messages) {
  await page.evaluate(({ label, messages }) => {
    for (const m of messages) window.__own[label].send(typeof m === 'string' ? m : new Uint8Array(m));
  }, { label, messages });
}

/** Waits until the page's relay `label` from `peerId` got `count` messages; returns the relay. */
async function relayWith(page, label, peerId, count) {
  const find = () => page.evaluate(({ label, peerId }) => window.__relays
    .find((r) => r.label === label && r.peerId === peerId) ?? null, { label, peerId });
  try {
    await poll(async () => ((await find())?.messages.length ?? -1) >= count, { timeout: 15_000, what: `${count} messages on ${label}` });
  } catch (err) {
    // The ids and DTLS roles tell a stream id collision (both ends picking the same parity) apart.
    err.message += `\nown channels [id, state], DTLS setup, SCTP: ${JSON.stringify(await page.evaluate(() => ({
      own: Object.fromEntries(Object.entries(window.__own ?? {}).map(([k, c]) => [k, [c.id, c.readyState]])),
      local: window.edgeSfu.pc.currentLocalDescription?.sdp.match(/a=setup:\w+/g),
      remote: window.edgeSfu.pc.currentRemoteDescription?.sdp.match(/a=setup:\w+/g),
      sctp: window.edgeSfu.pc.sctp?.state,
    })))}`;
    err.message += `\nrelays: ${JSON.stringify(await page.evaluate(() => window.__relays))}\n${await describePage(page)}`;
    throw err;
  }
  return find();
}

test('data channels of any label are relayed both ways with their options and sender', { timeout: 90_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const ana = await joinRoom(fx, room, 'ana');
  const bob = await joinRoom(fx, room, 'bob');
  await recordRelays(ana.page);
  await recordRelays(bob.page);

  await openOwn(ana.page, 'cursor', { ordered: false, maxRetransmits: 0 });
  await openOwn(ana.page, 'state', {});
  await openOwn(bob.page, 'state', {});
  // A member gets relays once its own SCTP association is up; what is sent before is not kept.
  await relayWith(bob.page, 'cursor', ana.id, 0);
  await relayWith(bob.page, 'state', ana.id, 0);
  await relayWith(ana.page, 'state', bob.id, 0);

  // Each end opens its channels on stream ids of its own parity (RFC 8832: the DTLS client even,
  // the server odd), so a member's channels and the SFU's relays to it never share an id.
  for (const page of [ana.page, bob.page]) {
    const { own, relays } = await page.evaluate(() => ({
      own: Object.values(window.__own).map((c) => c.id % 2),
      relays: window.__relays.map((r) => r.sid % 2),
    }));
    assert.ok(own.length > 0 && relays.length > 0);
    assert.ok(own.every((p) => p === own[0]) && relays.every((p) => p !== own[0]), `parities: own ${own}, relays ${relays}`);
  }

  const positions = [1, 2, 3, 4, 5].map((i) => JSON.stringify({ x: i * 10, y: i * 20 }));
  await send(ana.page, 'cursor', positions);
  await send(ana.page, 'state', [[0, 1, 2, 254, 255], 'after the bytes']);
  await send(bob.page, 'state', [[9, 8, 7]]);

  // Unordered and without retransmissions: on loopback nothing is lost, in whatever order.
  const cursor = await relayWith(bob.page, 'cursor', ana.id, positions.length);
  assert.equal(cursor.peerName, 'ana');
  assert.equal(cursor.ordered, false);
  assert.equal(cursor.maxRetransmits, 0);
  assert.deepEqual(cursor.messages.map((m) => m.text).sort(), [...positions].sort());

  const fromAna = await relayWith(bob.page, 'state', ana.id, 2);
  assert.equal(fromAna.ordered, true);
  assert.deepEqual(fromAna.messages, [{ bytes: [0, 1, 2, 254, 255] }, { text: 'after the bytes' }]);
  const fromBob = await relayWith(ana.page, 'state', bob.id, 1);
  assert.equal(fromBob.peerName, 'bob');
  assert.deepEqual(fromBob.messages, [{ bytes: [9, 8, 7] }]);
  assert.equal(await ana.page.evaluate(() => window.__relays.length), 1, 'ana gets only bob\'s channel');
  assertNoPageProblems(ana.page, bob.page);

  // Past the SFU's 16 KiB message limit: an error to the sender, nothing relayed.
  await send(ana.page, 'state', [[...new Uint8Array(20_000)], 'fits']);
  assert.deepEqual((await relayWith(bob.page, 'state', ana.id, 3)).messages.at(-1), { text: 'fits' });
  await poll(() => ana.page.problems.some((p) => p.includes('too_large')), { timeout: 10_000, what: 'a too_large error' });
  assert.deepEqual(ana.page.problems.filter((p) => !p.includes('too_large')), []);
  assertNoPageProblems(bob.page);
});
