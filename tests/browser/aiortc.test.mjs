// A room with a Chromium member and an aiortc member (../aiortc/member.py: an independent WebRTC stack
// speaking the WebSocket protocol as docs/protocol.md documents it): aiortc decodes Chromium's simulcast
// camera and Opus, Chromium decodes aiortc's camera and plays its audio, both greet each other on a
// relayed `game` data channel, and Chromium sees aiortc leave.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipWithoutChromium, serverAndBrowser, joinRoom, expectMediaFrom, poll, describePage, assertNoPageProblems,
} from './harness.mjs';
import { skipWithoutAiortc, runScript } from './aiortc.mjs';

const fx = serverAndBrowser('edge-sfu-aiortc');
const room = `aiortc-${process.pid}`;

/** The page greets on its own `game` channel as member.py does, and records what arrives on the relays. */
async function greetOnGame(page, name) {
  await page.evaluate((name) => {
    window.__got = [];
    const game = window.edgeSfu.openChannel('game');
    const greet = () => {
      if (game.readyState !== 'open') return;
      game.send(`hello from ${name}`);
      game.send(new Uint8Array([0, ...new TextEncoder().encode(name)]));
    };
    game.onopen = greet;
    window.edgeSfu.addEventListener('datachannel', ({ detail }) => {
      detail.channel.onmessage = (ev) => window.__got.push({
        from: detail.peerId,
        label: detail.label,
        data: typeof ev.data === 'string' ? ev.data : [...new Uint8Array(ev.data)],
      });
      greet();
    });
  }, name);
}

test('a Chromium member and an aiortc member exchange media and data channel messages', { timeout: 150_000 }, async (t) => {
  if (skipWithoutChromium(t) || skipWithoutAiortc(t)) return;
  const ana = await joinRoom(fx, room, 'ana');
  await greetOnGame(ana.page, 'ana');
  await poll(() => ana.page.evaluate(() => window.edgeSfu.localTrack('camera')?.readyState === 'live'),
    { what: 'ana publishing her camera' });
  const { width, height } = await ana.page.evaluate(() => window.edgeSfu.localTrack('camera').getSettings());
  const ws = new URL('/ws', fx.server.url);
  ws.protocol = 'ws:';
  const rio = runScript('aiortc/member.py', [ws.href, room, 'rio', '--loopback', '--hold', '--like', `${width}x${height}`,
    '--frames', '30', '--seconds', '60'], { stdin: true });
  try {
    // aiortc decoded 30 frames of ana's picture (a simulcast layer of it), her Opus, and her greetings.
    const verdict = await rio.waitFor(/^(enough|FAILED)/, 'frames and greetings from ana', 70_000);
    assert.equal(verdict, 'enough', rio.lines.join('\n'));
    t.diagnostic(rio.lines.find((l) => l.startsWith('from ana')));

    const rioId = await poll(() => ana.page.evaluate(
      () => [...window.edgeSfu.peers.values()].find((p) => p.name === 'rio')?.id,
    ), { what: 'rio in the member list' });
    await expectMediaFrom(ana.page, [rioId], { label: 'ana' });
    const greetings = await poll(async () => {
      const got = await ana.page.evaluate(() => window.__got);
      return got.length >= 2 && got;
    }, { what: 'rio\'s greetings at ana' });
    assert.deepEqual(greetings.slice(0, 2), [
      { from: rioId, label: 'game', data: 'hello from rio' },
      { from: rioId, label: 'game', data: [0, ...Buffer.from('rio')] },
    ]);

    rio.proc.stdin.end();
    assert.equal(await rio.exited, 0, rio.lines.join('\n'));
    await poll(() => ana.page.evaluate((id) => !window.edgeSfu.peers.has(id), rioId), { what: 'rio gone from ana\'s list' });
    assertNoPageProblems(ana.page);
  } catch (err) {
    err.message += `\nana: ${await describePage(ana.page)}\naiortc:\n${rio.lines.join('\n')}`;
    throw err;
  } finally {
    rio.proc.kill('SIGKILL');
    await ana.page.close();
  }
});
