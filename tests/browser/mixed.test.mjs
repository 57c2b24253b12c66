// One room with the three kinds of member issue 17 names: a Chromium page as it comes (VP8 first), a Firefox page
// (Debian's firefox-esr, in a network namespace as in firefox.test.mjs) and an H.264-only Chromium page
// (`?codecs=h264`). Root only, skipped loudly otherwise.
//
// The SFU forwards video without transcoding, so who sees whom depends on Firefox's H.264:
//
// - Firefox has H.264 only with the OpenH264 plugin, which it downloads at run time. Without it (as on a machine
//   without internet, like the test machines) it neither sends nor decodes H.264: the VP8 Chromium and Firefox decode
//   each other in VP8 (the policy's tie between VP8 and H.264 for the VP8 Chromium goes to the preferred VP8),
//   the VP8 Chromium decodes the H.264-only member, and the H.264-only member decodes no video, but is never sent
//   any it cannot decode: its SDP lists no VP8, and the SFU drops and counts (`no_matching_codec`) what it would
//   have to send it in VP8, and Firefox the H.264-only member's video.
// - With H.264 both ways, every member decodes every other, in H.264.
//
// Either way everyone receives everyone's microphone (Opus).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { assertNoPageProblems, describePage, expectMediaFrom, poll, remoteMedia } from './harness.mjs';
import { firefoxAndChromium, openFirefoxPage } from './firefox.mjs';
import { cameraVideoByPeer, lists, videoCapabilities } from './codecs.mjs';

/**
 * The third octet of this test's veth addresses (lan.test.mjs uses 11, reach.test.mjs 31, shaped.test.mjs 41,
 * firefox.test.mjs 51, svc.test.mjs 53).
 */
const NS_INDEX = 55;

const fx = firefoxAndChromium('mixed', NS_INDEX);
/** Firefox's video codecs (`videoCapabilities`), set by the first test. */
let foxCodecs;

test('what Firefox sends and decodes: VP8, and H.264 only with the OpenH264 plugin', { timeout: 90_000 }, async (t) => {
  if (fx.skipped(t)) return;
  // getCapabilities answers in any page; the SFU's own page, without joining, is at hand.
  const page = await openFirefoxPage(fx.firefox, new URL('/', fx.server.url).href, 'firefox/capabilities');
  t.after(() => page.close().catch(() => {}));
  foxCodecs = await videoCapabilities(page);
  console.log(`[mixed] ${await fx.firefox.version()} sends ${foxCodecs.send.join(', ')}; decodes ${foxCodecs.recv.join(', ')}`);
  assert.ok(lists(foxCodecs.send, 'video/VP8') && lists(foxCodecs.recv, 'video/VP8'), JSON.stringify(foxCodecs));
  // H.264 is all or nothing in Firefox (the plugin does both), which the expectations below rely on.
  assert.equal(lists(foxCodecs.send, 'video/H264'), lists(foxCodecs.recv, 'video/H264'), JSON.stringify(foxCodecs));
});

/**
 * Waits until `viewer` decodes the camera of each publisher in `video` (`{peerId: mimeType}`), frames rising and shown,
 * and receives the microphone of each of `audio` (peer ids), packets rising.
 */
async function expectMedia(viewer, { video, audio }) {
  const label = viewer.name;
  const withVideo = Object.keys(video).map(Number);
  await expectMediaFrom(viewer.page, withVideo, { label, timeout: 45_000, audio: false });
  const mic = (media, id) => media.find((m) => m.peerId === id && m.kind === 'audio')?.packetsReceived ?? 0;
  const first = await poll(async () => {
    const media = await remoteMedia(viewer.page);
    return audio.every((id) => mic(media, id) > 0) && media;
  }, { timeout: 30_000, what: `${label}: audio packets from peers ${audio.join(', ')}` });
  await poll(async () => {
    const media = await remoteMedia(viewer.page);
    return audio.every((id) => mic(media, id) > mic(first, id));
  }, { timeout: 10_000, what: `${label}: audio packets rising` });
  let last = null;
  await poll(async () => {
    last = await cameraVideoByPeer(viewer.page);
    return withVideo.every((id) => last[id]?.codec === video[id] && last[id].framesDecoded > 0);
  }, { timeout: 15_000, what: `${label}: decodes ${JSON.stringify(video)}` })
    .catch((err) => { err.message += `\nlast: ${JSON.stringify(last)}`; throw err; });
}

test('a VP8 Chromium, a Firefox and an H.264-only Chromium in one room', { timeout: 180_000 }, async (t) => {
  if (fx.skipped(t)) return;
  if (!foxCodecs) return t.skip('needs Firefox\'s codecs from the first test');
  const room = `mixed-${process.pid}`;
  const vp8 = await fx.joinChromium(room, 'vp8', { video: '640x360' });
  const fox = await fx.joinFirefox(room, 'fox');
  const h264 = await fx.joinChromium(room, 'h264', { video: '640x360', codecs: 'h264' });
  const all = [vp8, fox, h264];
  t.after(async () => {
    await fox.page.close().catch(() => {});
    for (const p of [vp8, h264]) await p.page.context().close().catch(() => {});
  });
  const foxH264 = lists(foxCodecs.recv, 'video/H264');
  const H264 = 'video/H264';
  const VP8 = 'video/VP8';
  // Who decodes whose camera in which codec; every member hears the two others.
  const expected = foxH264
    ? {
      vp8: { [fox.id]: H264, [h264.id]: H264 },
      fox: { [vp8.id]: H264, [h264.id]: H264 },
      h264: { [vp8.id]: H264, [fox.id]: H264 },
    }
    : {
      vp8: { [fox.id]: VP8, [h264.id]: H264 },
      fox: { [vp8.id]: VP8 },
      h264: {},
    };
  try {
    for (const viewer of all) {
      await expectMedia(viewer, { video: expected[viewer.name], audio: all.filter((p) => p !== viewer).map((p) => p.id) });
    }
    // What the policy asked the Chromium pages to send (Firefox's page is not recorded).
    const askedFor = (p) => p.page.received.filter((m) => m.type === 'videoCodec').at(-1)?.codec;
    assert.equal(askedFor(vp8), foxH264 ? 'H264' : 'VP8', 'the VP8 Chromium\'s videoCodec');
    assert.equal(askedFor(h264), 'H264', 'the H.264-only Chromium\'s videoCodec');
    // The H.264-only member cannot be sent VP8: its answer accepted none.
    const sdp = await h264.page.evaluate(() => window.edgeSfu.pc.currentLocalDescription.sdp);
    assert.ok(!/a=rtpmap:\d+ VP8\//.test(sdp), `the H.264-only page's SDP lists VP8:\n${sdp}`);
    if (!foxH264) {
      // The cameras a member cannot decode reached it not at all: announced, never a frame (the SFU dropped them).
      const undecodable = { fox: [h264.id], h264: [vp8.id, fox.id] };
      for (const viewer of [fox, h264]) {
        const video = await cameraVideoByPeer(viewer.page);
        for (const id of undecodable[viewer.name]) {
          assert.ok(id in video, `${viewer.name} was told of ${id}'s camera: ${JSON.stringify(video)}`);
          assert.equal(video[id].framesDecoded, 0, `${viewer.name} decoded ${id}'s camera: ${JSON.stringify(video)}`);
        }
      }
      const stats = await fx.server.stats();
      assert.ok(stats.drops.no_matching_codec > 0, `drops: ${JSON.stringify(stats.drops)}`);
    }
  } catch (err) {
    for (const p of all) {
      err.message += `\n${p.name}: ${await describePage(p.page)}\n${p.name} video: ${JSON.stringify(await cameraVideoByPeer(p.page).catch((e) => e.message))}`;
    }
    err.message += `\nserver log:\n${fx.server.logTail(30)}\nFirefox log: ${fx.firefox.logFile}`;
    throw err;
  }
  assertNoPageProblems(...all.map((p) => p.page));
});
