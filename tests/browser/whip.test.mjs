// WHIP and WHEP with an independent WebRTC stack: aiortc (Python, PyAV) publishes into a room over
// WHIP and a Chromium member decodes its video; aiortc watches a Chromium member over WHEP and
// decodes its frames. The scripts are in ../whip/, run as aiortc.mjs says.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipWithoutChromium, serverAndBrowser, joinRoom, expectMediaFrom, poll, describePage, assertNoPageProblems,
} from './harness.mjs';
import { skipWithoutAiortc, runScript } from './aiortc.mjs';

const fx = serverAndBrowser('edge-sfu-whip');
const room = `whip-${process.pid}`;

test('an aiortc WHIP publisher joins the room and a Chromium member decodes its video', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t) || skipWithoutAiortc(t)) return;
  const viewer = await joinRoom(fx, room, 'viewer');
  const url = new URL(`/whip/${room}?name=aiortc`, fx.server.url).href;
  const whip = runScript('whip/whip_publish.py', [url, '--loopback']);
  try {
    await whip.waitFor(/^connected$/, 'ICE and DTLS up');
    const id = await poll(() => viewer.page.evaluate(
      () => [...window.edgeSfu.peers.values()].find((p) => p.name === 'aiortc')?.id,
    ), { what: 'the WHIP publisher in the member list' });
    await expectMediaFrom(viewer.page, [id], { label: 'viewer' });
    whip.proc.kill('SIGTERM');
    assert.equal(await whip.exited, 0, whip.lines.join('\n'));
    assert.ok(whip.lines.includes('deleted: 200'), whip.lines.join('\n'));
    await poll(() => viewer.page.evaluate((id) => ![...window.edgeSfu.peers.values()].some((p) => p.id === id), id),
      { what: 'the WHIP publisher gone from the member list' });
    assertNoPageProblems(viewer.page);
  } catch (err) {
    err.message += `\nviewer: ${await describePage(viewer.page)}\naiortc:\n${whip.lines.join('\n')}`;
    throw err;
  } finally {
    whip.proc.kill('SIGKILL');
    await viewer.page.close();
  }
});

test('an aiortc WHEP viewer decodes the frames of a Chromium member', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t) || skipWithoutAiortc(t)) return;
  const whepRoom = `whep-${process.pid}`;
  const ana = await joinRoom(fx, whepRoom, 'ana');
  let viewer;
  try {
    await poll(() => ana.page.evaluate(() => window.edgeSfu.localTrack('camera')?.readyState === 'live'),
      { what: 'ana publishing her camera' });
    // Frames of ana's camera picture: its size, or scaled down (which simulcast layer the viewer
    // gets is its bandwidth estimate's choice, and a busy machine makes Chromium scale down).
    const { width, height } = await ana.page.evaluate(() => window.edgeSfu.localTrack('camera').getSettings());
    const url = new URL(`/whep/${whepRoom}`, fx.server.url).href;
    viewer = runScript('whip/whep_view.py', [url, '--loopback', '--frames', '30', '--like', `${width}x${height}`, '--seconds', '45']);
    assert.equal(await viewer.exited, 0, `expected frames like ${width}x${height}:\n${viewer.lines.join('\n')}`);
    assert.ok(viewer.lines.includes('deleted: 200'), viewer.lines.join('\n'));
    t.diagnostic(viewer.lines.find((l) => l.startsWith('decoded')));
    assertNoPageProblems(ana.page);
  } catch (err) {
    err.message += `\nana: ${await describePage(ana.page)}`;
    throw err;
  } finally {
    viewer?.proc.kill('SIGKILL');
    await ana.page.close();
  }
});
