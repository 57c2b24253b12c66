// Room tokens through the room page: invite links from `edge-sfu token` join and exchange media;
// pages with an expired token, no token or a token for another room show the refusal in words, and
// the participants already in the room see nobody join.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  EDGE_SFU_BIN, skipWithoutChromium, serverAndBrowser, openPage, waitJoined, expectMediaFrom, poll,
  describePage, assertNoPageProblems,
} from './harness.mjs';

const SECRET = `browser-test secret ${process.pid}, long enough for HS256`;
const secretFile = path.join(os.tmpdir(), `edge-sfu-browser-secret-${process.pid}`);
fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });

const room = `invite-${process.pid}`;
const fx = serverAndBrowser('edge-sfu-tokens', { args: ['--auth-secret-file', secretFile] });
const people = {}; // name -> {page, id}

/** The invite link `edge-sfu token` prints for `name` in `forRoom`. */
function invite(name, forRoom = room) {
  const out = execFileSync(EDGE_SFU_BIN, [
    'token', '--auth-secret-file', secretFile, '--room', forRoom, '--name', name, '--ttl', '1h',
    '--base-url', fx.server.url,
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim();
}

/** An HS256 token made here, for claims `edge-sfu token` will not make (an expired one). */
function jwt(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function withParams(link, params) {
  const u = new URL(link);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

/** Opens `url`, lets the page join on its own, and returns the refusal text it shows. */
async function refusalShown(url, label) {
  const page = await openPage(fx.browser, url, label);
  try {
    await page.waitForSelector('#join-error:not([hidden])', { timeout: 20_000 });
  } catch (err) {
    err.message += `\n${label}: ${await describePage(page)}`;
    throw err;
  }
  assert.equal(await page.isVisible('#join-view'), true, `${label}: the join form is shown again`);
  const text = await page.innerText('#join-error');
  await page.context().close();
  return text;
}

test('invite links from edge-sfu token join, and the two pages exchange media', { timeout: 150_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  // ana opens the link as printed: the form shows the token's room and name, and she clicks Join.
  const anaLink = invite('ana');
  const anaToken = new URL(anaLink).searchParams.get('token');
  assert.ok(anaToken, anaLink);
  const anaPage = await openPage(fx.browser, anaLink, 'ana');
  await anaPage.waitForSelector('#join-view:not([hidden])');
  assert.equal(await anaPage.inputValue('#join-room'), room);
  assert.equal(await anaPage.inputValue('#join-name'), 'ana');
  assert.equal(await anaPage.$eval('#join-name', (el) => el.readOnly), true, 'the token sets the name');
  await anaPage.click('#join-button');
  people.ana = { page: anaPage, id: await waitJoined(anaPage), name: 'ana' };

  // bob's link with autojoin, and a name of his own choosing that the token overrides.
  const bobPage = await openPage(fx.browser, withParams(invite('bob'), { autojoin: '1', name: 'the boss' }), 'bob');
  people.bob = { page: bobPage, id: await waitJoined(bobPage), name: 'bob' };

  const { ana, bob } = people;
  await Promise.all([
    expectMediaFrom(ana.page, [bob.id], { label: 'ana' }),
    expectMediaFrom(bob.page, [ana.id], { label: 'bob' }),
  ]);
  // Each sees the other under the token's name.
  const nameOn = (p, id) => p.page.$eval(`.tile[data-peer-id="${id}"][data-source="camera"] .name`, (el) => el.textContent);
  assert.equal(await nameOn(bob, ana.id), 'ana');
  assert.equal(await nameOn(ana, bob.id), 'bob');
  // The link the page shows in its address bar keeps the token.
  assert.equal(new URL(ana.page.url()).searchParams.get('token'), anaToken);
  assertNoPageProblems(ana.page, bob.page);
});

test('expired, missing and wrong-room tokens are refused in words; nobody sees them join', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  const { ana, bob } = people;
  if (!ana || !bob) {
    t.skip('needs the participants of the previous test');
    return;
  }
  for (const p of [ana, bob]) {
    await p.page.evaluate(() => {
      window.__joinedNames = [];
      window.edgeSfu.addEventListener('peerjoined', (e) => window.__joinedNames.push(e.detail.peer.name));
    });
  }
  const now = Math.floor(Date.now() / 1000);
  const expired = jwt({ room, sub: 'eve', name: 'eve', exp: now - 3600, iat: now - 7200 });
  const base = new URL('/', fx.server.url);

  const expiredText = await refusalShown(withParams(base.href, { room, token: expired, autojoin: '1' }), 'eve');
  assert.match(expiredText, /invite link has expired/, expiredText);

  const missingText = await refusalShown(withParams(base.href, { room, name: 'mallory', autojoin: '1' }), 'mallory');
  assert.match(missingText, /needs an invite link/, missingText);

  const elsewhere = new URL(invite('trudy', `${room}-other`)).searchParams.get('token');
  const wrongText = await refusalShown(withParams(base.href, { room, token: elsewhere, autojoin: '1' }), 'trudy');
  assert.match(wrongText, /for another room/, wrongText);

  // Ordered proof that none of them reached the room: cy joins after them, and cy is the only
  // join ana and bob see.
  const cyPage = await openPage(fx.browser, withParams(invite('cy'), { autojoin: '1' }), 'cy');
  people.cy = { page: cyPage, id: await waitJoined(cyPage), name: 'cy' };
  for (const [name, p] of [['ana', ana], ['bob', bob]]) {
    await poll(() => p.page.evaluate(() => window.__joinedNames.includes('cy')), { what: `${name} sees cy join` });
    assert.deepEqual(await p.page.evaluate(() => window.__joinedNames), ['cy'], `${name} saw joins`);
  }
  const stats = await fx.server.stats();
  assert.equal(stats.peers, 3, JSON.stringify(stats));
  for (const counter of ['token_expired', 'auth_required', 'wrong_room']) {
    assert.equal(stats.drops[counter], 1, `${counter}: ${JSON.stringify(stats.drops)}`);
  }
  assertNoPageProblems(ana.page, bob.page, cyPage);
});
