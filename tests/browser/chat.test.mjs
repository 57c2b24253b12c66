// Chat through the room page's UI, and the call controls (mute, camera, in-room screen share) as the
// other participant sees them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumPresent, skipWithoutChromium, serverAndBrowser, joinRoom, openPage, waitJoined,
  expectMediaFrom, roomUrl, poll, describePage, remoteMedia, assertNoPageProblems,
} from './harness.mjs';

let ana;
let bob;
const room = `chat-${process.pid}`;

const fx = serverAndBrowser('edge-sfu-chat');

async function join(name) {
  return joinRoom(fx, room, name);
}

async function say(from, text) {
  await from.page.fill('#chat-input', text);
  await from.page.click('#chat-send');
}

async function expectLine(to, fromName, text) {
  try {
    await poll(() => to.page.evaluate(({ text, fromName }) => [...document.querySelectorAll('#chat-log .chat-line')].some(
      (li) => li.querySelector('.chat-text')?.textContent === text && li.querySelector('.chat-name')?.textContent === fromName,
    ), { text, fromName }), { timeout: 10_000, what: `${to.name} shows "${text}" from ${fromName}` });
  } catch (err) {
    const log = await to.page.$eval('#chat-log', (el) => el.innerText).catch(() => '?');
    err.message += `\nchat log of ${to.name}:\n${log}\n${await describePage(to.page)}`;
    throw err;
  }
}

test('chat round trip through the page', { timeout: 60_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  // ana uses the join form (no autojoin): prefilled from the URL, one click.
  const formUrl = new URL('/', fx.server.url);
  formUrl.searchParams.set('room', room);
  formUrl.searchParams.set('name', 'ana');
  const page = await openPage(fx.browser, formUrl.href, 'ana');
  await page.waitForSelector('#join-view:not([hidden])');
  assert.equal(await page.inputValue('#join-room'), room);
  assert.equal(await page.inputValue('#join-name'), 'ana');
  assert.equal(await page.evaluate(() => window.edgeSfu), undefined, 'no join before the click');
  await page.click('#join-button');
  ana = { page, id: await waitJoined(page), name: 'ana' };
  bob = await join('bob');
  // Once media is up the chat data channel is open too; the first line may still go either way.
  await say(ana, 'hello bob');
  await expectLine(bob, 'ana', 'hello bob');
  await expectLine(ana, 'You', 'hello bob');
  await say(bob, 'hi ana <b>not bold</b>');
  await expectLine(ana, 'bob', 'hi ana <b>not bold</b>');
  assert.equal(await ana.page.$$eval('#chat-log b', (els) => els.length), 0, 'chat text must not be parsed as HTML');
  assert.equal(await ana.page.inputValue('#chat-input'), '');
  // Over the data channel once it is open.
  await poll(() => ana.page.evaluate(() => window.edgeSfu.chatChannel?.readyState === 'open'), { timeout: 20_000, what: 'ana chat channel open' });
  await poll(() => bob.page.evaluate(() => window.edgeSfu.chatChannel?.readyState === 'open'), { timeout: 20_000, what: 'bob chat channel open' });
  await ana.page.evaluate(() => {
    window.__lastChatVia = new Promise((resolve) => {
      window.edgeSfu.addEventListener('chat', (e) => resolve(e.detail.via), { once: true });
    });
  });
  await say(bob, 'over the data channel');
  await expectLine(ana, 'bob', 'over the data channel');
  assert.equal(await ana.page.evaluate(() => window.__lastChatVia), 'datachannel');
  assertNoPageProblems(ana.page, bob.page);
});

test('mute, camera off and in-room screen share are seen by the other participant', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  if (!ana || !bob) {
    t.skip('needs the participants of the previous test');
    return;
  }
  await expectMediaFrom(bob.page, [ana.id], { label: 'bob' });
  const anaTile = `.tile[data-peer-id="${ana.id}"][data-source="camera"]`;

  // Microphone
  await ana.page.click('#mic');
  assert.equal(await ana.page.getAttribute('#mic', 'data-state'), 'off');
  await bob.page.waitForSelector(`${anaTile}.mic-off`, { timeout: 5000 });
  await ana.page.click('#mic');
  await bob.page.waitForSelector(`${anaTile}:not(.mic-off)`, { timeout: 5000 });

  // Camera
  await ana.page.click('#camera');
  // Turning the camera off releases the device first: the button's state follows asynchronously.
  await poll(() => ana.page.getAttribute('#camera', 'data-state').then((s) => s === 'off'), { timeout: 10_000, what: 'camera off' });
  await bob.page.waitForSelector(`${anaTile}.no-video`, { timeout: 5000 });
  await ana.page.click('#camera');
  await poll(() => ana.page.getAttribute('#camera', 'data-state').then((s) => s === 'on'), { timeout: 10_000, what: 'camera back on' });
  await bob.page.waitForSelector(`${anaTile}:not(.no-video)`, { timeout: 5000 });
  const v1 = (await remoteMedia(bob.page)).find((m) => m.peerId === ana.id && m.source === 'camera');
  await poll(async () => {
    const v2 = (await remoteMedia(bob.page)).find((m) => m.peerId === ana.id && m.source === 'camera');
    return v2 && v2.framesDecoded > v1.framesDecoded + 10;
  }, { timeout: 15_000, what: 'bob decodes ana\'s camera again after it was turned back on' });

  // Screen share inside the room: its own tile on the other side, gone when it stops.
  const screenTile = `.tile[data-peer-id="${ana.id}"][data-source="screen"]`;
  for (let round = 1; round <= 2; round++) {
    await ana.page.click('#screen');
    await poll(() => ana.page.getAttribute('#screen', 'data-state').then((s) => s === 'on'), { timeout: 10_000, what: 'ana sharing' });
    try {
      await poll(() => bob.page.evaluate((sel) => document.querySelector(`${sel} video`)?.videoWidth > 0, screenTile),
        { timeout: 30_000, what: `bob shows ana's screen (round ${round})` });
    } catch (err) {
      err.message += `\nbob: ${await describePage(bob.page)}\nana: ${await describePage(ana.page)}`;
      throw err;
    }
    await ana.page.click('#screen');
    await bob.page.waitForSelector(screenTile, { state: 'detached', timeout: 10_000 });
  }
  // Camera and audio still flow afterwards.
  await expectMediaFrom(bob.page, [ana.id], { label: 'bob' });
  await expectMediaFrom(ana.page, [bob.id], { label: 'ana' });
  assertNoPageProblems(ana.page, bob.page);
});
