// Recording a room of two Chromium participants: started and stopped over the HTTP API, then from
// the page's record button by a member whose token grants `record`. Every member sees the
// recording indicator while it runs; only the permitted one sees the button; the files are
// ffprobe-clean VP8 + Opus.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  EDGE_SFU_BIN, skipWithoutChromium, serverAndBrowser, openPage, waitJoined, expectMediaFrom, poll,
  assertNoPageProblems,
} from './harness.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sfu-recording-browser-'));
const secretFile = path.join(dir, 'secret');
fs.writeFileSync(secretFile, `browser-test secret ${process.pid}, long enough for HS256\n`, { mode: 0o600 });
const recordDir = path.join(dir, 'recordings');
const room = `rec-${process.pid}`;
const fx = serverAndBrowser('edge-sfu-recording', {
  args: ['--auth-secret-file', secretFile, '--record-dir', recordDir],
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The invite link (autojoin, one camera layer) of `name`, granting `record` or not. */
function invite(name, canRecord) {
  const link = execFileSync(EDGE_SFU_BIN, [
    'token', '--auth-secret-file', secretFile, '--room', room, '--name', name, '--ttl', '1h',
    '--can-record', String(canRecord), '--base-url', fx.server.url,
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const u = new URL(link);
  u.searchParams.set('autojoin', '1');
  u.searchParams.set('simulcast', '0');
  return u.href;
}

async function api(method) {
  const res = await fetch(new URL(`/api/rooms/${room}/recording`, fx.server.url), { method });
  return { status: res.status, body: await res.json() };
}

const badgeShown = (page) => page.isVisible('#recording');

async function expectBadge(people, shown, what) {
  for (const p of people) {
    await poll(async () => (await badgeShown(p.page)) === shown, { timeout: 10_000, what: `${p.name}: ${what}` });
  }
}

function probe(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' });
  const json = JSON.parse(out);
  return { codecs: json.streams.map((s) => s.codec_name).sort(), duration: Number(json.format.duration) };
}

function decodeErrors(file) {
  return execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function checkFiles(files, what) {
  assert.equal(files.length, 2, `${what}: one file per participant: ${files}`);
  for (const file of files) {
    const { codecs, duration } = probe(file);
    assert.deepEqual(codecs, ['opus', 'vp8'], `${what}: ${file}`);
    assert.ok(duration > 2, `${what}: ${file} lasts ${duration} s`);
    assert.equal(decodeErrors(file), '', `${what}: ${file} decodes cleanly`);
  }
}

test('recording from the API and from the page button, seen by every member', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const host = { name: 'host', page: await openPage(fx.browser, invite('host', true), 'host') };
  host.id = await waitJoined(host.page);
  const guest = { name: 'guest', page: await openPage(fx.browser, invite('guest', false), 'guest') };
  guest.id = await waitJoined(guest.page);
  await expectMediaFrom(host.page, [guest.id], { label: 'host' });
  await expectMediaFrom(guest.page, [host.id], { label: 'guest' });
  assert.equal(await host.page.isVisible('#record'), true, 'the record permission shows the button');
  assert.equal(await guest.page.isVisible('#record'), false, 'no button without the permission');
  await expectBadge([host, guest], false, 'no indicator before recording');

  // 1. From the API.
  const started = await api('POST');
  assert.equal(started.status, 201, JSON.stringify(started.body));
  await expectBadge([host, guest], true, 'indicator while the API recording runs');
  await new Promise((r) => setTimeout(r, 5000));
  const stopped = await api('DELETE');
  assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
  await expectBadge([host, guest], false, 'indicator gone after the stop');
  checkFiles(stopped.body.files, 'API recording');

  // 2. From the host's page.
  await host.page.click('#record');
  await expectBadge([host, guest], true, 'indicator while the page recording runs');
  await new Promise((r) => setTimeout(r, 5000));
  await host.page.click('#record');
  await expectBadge([host, guest], false, 'indicator gone after the page stopped it');
  const dirs = fs.readdirSync(recordDir).map((d) => path.join(recordDir, d)).filter((d) => d !== started.body.dir);
  assert.equal(dirs.length, 1, `one more recording: ${dirs}`);
  // The page's stop does not wait for the files: wait for the manifest to say finished.
  const manifest = path.join(dirs[0], 'manifest.json');
  await poll(() => JSON.parse(fs.readFileSync(manifest, 'utf8')).state === 'finished',
    { timeout: 10_000, what: 'the page recording finished' });
  const files = JSON.parse(fs.readFileSync(manifest, 'utf8')).files.map((f) => path.resolve(dirs[0], f.path));
  checkFiles(files, 'page recording');
  assertNoPageProblems(host.page, guest.page);
});
