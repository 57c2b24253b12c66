// Perfect negotiation against the real server: the browser (polite) and the SFU (impolite) offer at the
// same time; the browser rolls back, answers the SFU, and offers its own change again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumPresent, skipWithoutChromium, serverAndBrowser, joinRoom, openPage, waitJoined,
  expectMediaFrom, roomUrl, poll, describePage, remoteMedia, assertNoPageProblems,
} from './harness.mjs';

const room = `glare-${process.pid}`;

const fx = serverAndBrowser('edge-sfu-glare');

async function join(name) {
  return joinRoom(fx, room, name);
}

test('glare: the browser rolls back its offer, answers the SFU\'s, then offers again', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const ana = await join('ana');
  const bob = await join('bob');
  await expectMediaFrom(ana.page, [bob.id], { label: 'ana' });

  // Hold the next offer the SFU sends to ana, so that ana's own offer is outstanding when it lands.
  await ana.page.evaluate(() => {
    const c = window.edgeSfu;
    const deliver = c._onWsMessage.bind(c);
    window.__held = null;
    c._onWsMessage = (data) => {
      if (!window.__held && JSON.parse(data).type === 'offer') {
        window.__held = data;
        return;
      }
      deliver(data);
    };
    window.__release = () => deliver(window.__held);
  });
  // cy joins: the SFU offers cy's tracks to ana (held).
  const cy = await join('cy');
  await poll(() => ana.page.evaluate(() => !!window.__held), { timeout: 15_000, what: 'the SFU offers cy\'s tracks to ana' });
  // Meanwhile ana starts a screen share: her offer goes out.
  const offersBefore = await ana.page.evaluate(() => window.edgeSfu.negotiations.offersSent);
  await ana.page.click('#screen');
  await poll(() => ana.page.evaluate((n) => window.edgeSfu.negotiations.offersSent > n
    && window.edgeSfu.pc.signalingState === 'have-local-offer', offersBefore), { timeout: 10_000, what: 'ana\'s offer outstanding' });
  // Now the SFU's offer arrives: collision.
  await ana.page.evaluate(() => window.__release());
  try {
    await poll(() => ana.page.evaluate(() => window.edgeSfu.negotiations.rollbacks >= 1), { timeout: 10_000, what: 'ana rolled back' });
    // Everything converges: ana receives cy, cy and bob receive ana (camera and screen).
    await Promise.all([
      expectMediaFrom(ana.page, [bob.id, cy.id], { label: 'ana' }),
      expectMediaFrom(bob.page, [ana.id, cy.id], { label: 'bob' }),
      expectMediaFrom(cy.page, [ana.id, bob.id], { label: 'cy' }),
    ]);
    for (const p of [bob, cy]) {
      await poll(() => p.page.evaluate((id) => document.querySelector(`.tile[data-peer-id="${id}"][data-source="screen"] video`)?.videoWidth > 0, ana.id),
        { timeout: 30_000, what: `${p.name} shows ana's screen` });
      const screen = (await remoteMedia(p.page)).find((m) => m.peerId === ana.id && m.source === 'screen');
      assert.ok(screen && screen.framesDecoded > 0, `${p.name} decodes ana's screen`);
    }
    assert.equal(await ana.page.evaluate(() => window.edgeSfu.pc.signalingState), 'stable');
    assertNoPageProblems(ana.page, bob.page, cy.page);
  } catch (err) {
    err.message += `\nana: ${await describePage(ana.page)}\nbob: ${await describePage(bob.page)}\ncy: ${await describePage(cy.page)}\nserver log:\n${fx.server.logTail(30)}`;
    throw err;
  }
});
