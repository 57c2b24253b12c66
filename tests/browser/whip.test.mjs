// WHIP and WHEP with an independent WebRTC stack: aiortc (Python, PyAV) publishes into a room over
// WHIP and a Chromium member decodes its video; aiortc watches a Chromium member over WHEP and
// decodes its frames. The scripts are in ../whip/. scripts/test installs
// aiortc into target/aiortc-venv; AIORTC_PYTHON names another interpreter that has it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipWithoutChromium, serverAndBrowser, joinRoom, expectMediaFrom, poll, describePage, assertNoPageProblems,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.AIORTC_PYTHON || path.resolve(here, '../../target/aiortc-venv/bin/python3');
const SCRIPTS = path.resolve(here, '../whip');

const fx = serverAndBrowser('edge-sfu-whip');
const room = `whip-${process.pid}`;

/** Skips the test (loudly) when the Python with aiortc is missing. Returns true when skipped. */
function skipWithoutAiortc(t) {
  if (fs.existsSync(PYTHON)) return false;
  const msg = `${PYTHON} is missing: aiortc tests SKIPPED (scripts/test installs it; or set AIORTC_PYTHON)`;
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
  return true;
}

/**
 * Runs one of the aiortc scripts; its output lines are collected (`lines`), `waitFor(re)` waits for one that
 * matches, `exited` resolves to its exit code.
 */
function runScript(script, args) {
  const proc = spawn(PYTHON, [path.join(SCRIPTS, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const collect = (chunk) => lines.push(...String(chunk).split('\n').filter(Boolean));
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  const waitFor = (re, what, timeout = 30_000) => poll(() => lines.find((l) => re.test(l)), { timeout, what: `${script}: ${what}` })
    .catch((err) => {
      err.message += `\n${script} output:\n${lines.join('\n')}`;
      throw err;
    });
  return { proc, lines, exited, waitFor };
}

test('an aiortc WHIP publisher joins the room and a Chromium member decodes its video', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t) || skipWithoutAiortc(t)) return;
  const viewer = await joinRoom(fx, room, 'viewer');
  const url = new URL(`/whip/${room}?name=aiortc`, fx.server.url).href;
  const whip = runScript('whip_publish.py', [url, '--loopback']);
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
    viewer = runScript('whep_view.py', [url, '--loopback', '--frames', '30', '--like', `${width}x${height}`, '--seconds', '45']);
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
