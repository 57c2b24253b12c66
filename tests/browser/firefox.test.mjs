// Firefox (Debian's firefox-esr, over WebDriver BiDi with puppeteer-core) as a first-class client, in rooms with
// Chromium (root only, skipped loudly otherwise). Firefox runs in a network namespace joined to this machine by a veth
// pair with a default route: it gathers no loopback candidates. The SFU listens on the host end of the veth (HTTPS
// with its generated certificate) and announces that address; Chromium runs on the host.
//
// 1. Firefox and Chromium each decode the other's camera and receive the other's microphone.
// 2. Chat both ways through the page, over the chat data channel.
// 3. Mute (microphone) both ways, as the other browser's page shows it.
// 4. Firefox shares its screen; Chromium decodes it; it stops.
// 5. Firefox publishes its camera as three simulcast layers: a Chromium viewer with a small tile decodes the low
//    layer, one with a large tile the high layer. Twice: with the layers in the page's order (q;h;f, as Firefox 153
//    lists them), and listed largest first (f;h;q, as older Firefox did): the SFU orders them by picture size.
// 6. Firefox leaves (button) and Chromium sees it go; Chromium leaves and Firefox sees it go.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { assertNoPageProblems, describePage, expectMediaFrom, poll } from './harness.mjs';
import { firefoxAndChromium } from './firefox.mjs';
import { inboundVideo, publisherLayers, setTileWidth, videoTrackOf } from './quality.mjs';

/**
 * The third octet of this test's veth addresses (lan.test.mjs uses 11, reach.test.mjs 31, shaped.test.mjs 41,
 * svc.test.mjs 53, mixed.test.mjs 55).
 */
const NS_INDEX = 51;

const fx = firefoxAndChromium('firefox', NS_INDEX);
const { skipped } = fx;
const room = `firefox-${process.pid}`;
/** `{page, id, name}` of the two main participants, set by the first test. */
let fox;
let chrome;

/** Polls `page` until `fn(arg)` (run in the page) is truthy. */
function pageShows(page, fn, arg, what, timeout = 15_000) {
  return poll(() => page.evaluate(fn, arg), { timeout, what });
}

/** Whether `page` shows no element of peer `id` (its tiles and audio are gone). */
function peerGone(page, id, what) {
  return pageShows(page, (id) => document.querySelectorAll(`[data-peer-id="${id}"]`).length === 0, id, what);
}

test('Firefox and Chromium decode each other\'s camera and receive each other\'s microphone', { timeout: 120_000 }, async (t) => {
  if (skipped(t)) return;
  fox = await fx.joinFirefox(room, 'fox');
  chrome = await fx.joinChromium(room, 'chrome');
  await expectMediaFrom(chrome.page, [fox.id], { label: 'chromium', timeout: 45_000 });
  await expectMediaFrom(fox.page, [chrome.id], { label: 'firefox', timeout: 45_000 });
  // Firefox's media crossed the veth: its selected pair's remote end is the SFU's address there.
  const remote = await poll(() => fox.page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    let pair = null;
    report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const r = pair && report.get(pair.remoteCandidateId);
    return r ? r.address ?? r.ip : null;
  }), { what: 'Firefox\'s selected candidate pair' });
  assert.equal(remote, fx.ns.hostAddress);
  assertNoPageProblems(fox.page, chrome.page);
});

/** Types `text` into the page's chat box and sends it (the same DOM calls in both browsers). */
async function say(from, text) {
  await from.page.evaluate((text) => {
    const input = document.querySelector('#chat-input');
    input.value = text;
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }, text);
  await from.page.click('#chat-send');
}

function chatShows(to, fromName, text) {
  return pageShows(to.page, ({ text, fromName }) => [...document.querySelectorAll('#chat-log .chat-line')].some(
    (li) => li.querySelector('.chat-text')?.textContent === text && li.querySelector('.chat-name')?.textContent === fromName,
  ), { text, fromName }, `${to.name} shows "${text}" from ${fromName}`);
}

test('chat both ways over the data channel', { timeout: 60_000 }, async (t) => {
  if (skipped(t)) return;
  if (!fox || !chrome) return t.skip('needs the participants of the first test');
  for (const p of [fox, chrome]) {
    await pageShows(p.page, () => window.edgeSfu.chatChannel?.readyState === 'open', null, `${p.name}'s chat channel open`, 20_000);
    await p.page.evaluate(() => {
      window.__chatVia = [];
      window.edgeSfu.addEventListener('chat', (e) => window.__chatVia.push(e.detail.via));
    });
  }
  await say(fox, 'hello from Firefox');
  await chatShows(chrome, 'fox', 'hello from Firefox');
  await say(chrome, 'hello from Chromium');
  await chatShows(fox, 'chrome', 'hello from Chromium');
  for (const p of [fox, chrome]) assert.deepEqual(await p.page.evaluate(() => window.__chatVia), ['datachannel'], p.name);
  assertNoPageProblems(fox.page, chrome.page);
});

test('mute is seen by the other browser, both ways', { timeout: 60_000 }, async (t) => {
  if (skipped(t)) return;
  if (!fox || !chrome) return t.skip('needs the participants of the first test');
  for (const [who, viewer] of [[fox, chrome], [chrome, fox]]) {
    const tile = `.tile[data-peer-id="${who.id}"][data-source="camera"]`;
    await who.page.click('#mic');
    await pageShows(viewer.page, (sel) => !!document.querySelector(`${sel}.mic-off`), tile, `${viewer.name} shows ${who.name} muted`);
    await who.page.click('#mic');
    await pageShows(viewer.page, (sel) => !!document.querySelector(`${sel}:not(.mic-off)`), tile, `${viewer.name} shows ${who.name} unmuted`);
  }
  assertNoPageProblems(fox.page, chrome.page);
});

test('Firefox\'s screen share is decoded by Chromium', { timeout: 60_000 }, async (t) => {
  if (skipped(t)) return;
  if (!fox || !chrome) return t.skip('needs the participants of the first test');
  if (!fx.firefox.hasScreen) {
    const msg = 'Xvfb is missing: Firefox has no screen to share, screen share test SKIPPED (apt-get install xvfb)';
    console.error(`\n!!! ${msg} !!!\n`);
    return t.skip(msg);
  }
  const screenTile = `.tile[data-peer-id="${fox.id}"][data-source="screen"]`;
  await fox.page.click('#screen');
  try {
    await pageShows(fox.page, () => document.querySelector('#screen').dataset.state === 'on', null, 'Firefox sharing');
    await pageShows(chrome.page, (sel) => document.querySelector(`${sel} video`)?.videoWidth > 0, screenTile,
      'Chromium shows Firefox\'s screen', 30_000);
  } catch (err) {
    err.message += `\nchromium: ${await describePage(chrome.page)}\nfirefox: ${await describePage(fox.page)}`;
    throw err;
  }
  await fox.page.click('#screen');
  await pageShows(chrome.page, (sel) => !document.querySelector(sel), screenTile, 'Firefox\'s screen tile gone');
  await expectMediaFrom(chrome.page, [fox.id], { label: 'chromium after the share' });
  assertNoPageProblems(fox.page, chrome.page);
});

/**
 * Runs in a Firefox page before its scripts: the page's simulcast encodings are passed to `addTransceiver` largest
 * first, so the offer lists `f;h;q` (as older Firefox releases did, and as other stacks may).
 */
function reverseSimulcastEncodings() {
  const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const encodings = init?.sendEncodings;
    const reversed = encodings?.length > 1 ? { ...init, sendEncodings: [...encodings].reverse() } : init;
    return addTransceiver.call(this, trackOrKind, reversed);
  };
}

for (const { order, preload, simulcastLine } of [
  { order: 'in the page\'s order', preload: null, simulcastLine: 'a=simulcast:send q;h;f' },
  { order: 'listed largest first', preload: reverseSimulcastEncodings, simulcastLine: 'a=simulcast:send f;h;q' },
]) {
  test(`Firefox simulcast ${order}: a small Chromium tile decodes the low layer, a large one the high layer`, { timeout: 120_000 }, async (t) => {
    if (skipped(t)) return;
    const simRoom = `${room}-simulcast-${preload ? 'reversed' : 'page'}`;
    const pub = await fx.joinFirefox(simRoom, 'foxpub', { mic: 0 }, preload);
    const small = await fx.joinChromium(simRoom, 'small', { camera: 0, mic: 0 });
    const large = await fx.joinChromium(simRoom, 'large', { camera: 0, mic: 0 });
    t.after(async () => {
      await pub.page.close().catch(() => {});
      for (const v of [small, large]) await v.page.context().close().catch(() => {});
    });
    try {
      const offered = await pub.page.evaluate(() => window.edgeSfu.pc.localDescription.sdp.match(/^a=simulcast:.*$/m)?.[0]);
      assert.equal(offered, simulcastLine);
      const trackId = await poll(() => videoTrackOf(small.page, pub.id), { what: 'small receives Firefox\'s camera' });
      await poll(() => videoTrackOf(large.page, pub.id), { what: 'large receives Firefox\'s camera' });
      await setTileWidth(small.page, pub.id, 240);
      await setTileWidth(large.page, pub.id, 1280);
      const decodesAt = async (viewer, ok, what) => {
        const start = await inboundVideo(viewer.page, trackId);
        return poll(async () => {
          const v = await inboundVideo(viewer.page, trackId);
          return v && ok(v.frameWidth) && v.framesDecoded > (start?.framesDecoded ?? 0) && v;
        }, { timeout: 45_000, what });
      };
      const low = await decodesAt(small, (w) => w > 0 && w <= 320, 'small decodes frames at most 320 wide');
      const high = await decodesAt(large, (w) => w >= 1280, 'large decodes frames at least 1280 wide');
      const layers = await publisherLayers(pub.page);
      console.log(`[firefox] ${simulcastLine}: small tile decodes ${low.frameWidth}x${low.frameHeight}, large tile ${high.frameWidth}x${high.frameHeight}; Firefox sends ${JSON.stringify(layers.map((l) => [l.rid, l.frameWidth]))}`);
      // The SFU numbers the layers by picture size, lowest first, whatever the offer's order.
      const stats = await pub.page.evaluate(() => window.edgeSfu.requestStats());
      const publication = stats.publishing.find((p) => p.trackId === trackId);
      assert.deepEqual(publication?.layers.map((l) => l.rid), ['q', 'h', 'f'], JSON.stringify(stats));
      // With only the small viewer left, the SFU's layerHint pauses h and f, naming Firefox's encodings in its
      // offer's order: q keeps going, and the small viewer keeps decoding it.
      await large.page.context().close();
      const encodings = () => pub.page.evaluate(() => Object.fromEntries(window.edgeSfu.pc.getTransceivers()
        .find((tr) => tr.sender.track?.kind === 'video').sender.getParameters().encodings.map((e) => [e.rid, e.active])));
      await poll(async () => {
        const active = await encodings();
        return active.q === true && active.h === false && active.f === false;
      }, { timeout: 20_000, what: `Firefox encodes only q (last: ${JSON.stringify(await encodings())})` });
      await decodesAt(small, (w) => w > 0 && w <= 320, 'small still decodes frames at most 320 wide');
    } catch (err) {
      for (const p of [pub, small, large]) err.message += `\n${p.name}: ${await describePage(p.page)}`;
      err.message += `\nserver log:\n${fx.server.logTail(30)}`;
      throw err;
    }
    assertNoPageProblems(pub.page, small.page, large.page);
  });
}

test('leaving is seen by the other browser, both ways', { timeout: 60_000 }, async (t) => {
  if (skipped(t)) return;
  if (!fox || !chrome) return t.skip('needs the participants of the first test');
  await fox.page.click('#leave');
  await peerGone(chrome.page, fox.id, 'Firefox gone from Chromium\'s page');
  // Back in, then Chromium leaves.
  fox = await fx.joinFirefox(room, 'fox2');
  await expectMediaFrom(fox.page, [chrome.id], { label: 'firefox after rejoining' });
  await chrome.page.click('#leave');
  await peerGone(fox.page, chrome.id, 'Chromium gone from Firefox\'s page');
  assertNoPageProblems(fox.page, chrome.page);
});
