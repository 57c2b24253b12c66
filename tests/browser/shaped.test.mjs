// Simulcast over a shaped link (root only, skipped loudly otherwise): a viewer's Chromium runs in a network
// namespace and reaches the SFU over a veth pair whose host end's egress (the viewer's downlink) the test shapes
// with tc. The publisher, a Chromium on the host, sends its 1280x720 camera as three layers.
//
// 1. With the link free and a large tile, the viewer decodes the high layer.
// 2. 300 kbit/s on the downlink (tbf): the SFU's bandwidth estimate falls and it switches the viewer to the low
//    layer. The time until the viewer decodes it is printed ("[shaped] downgrade after X.Xs").
// 3. The limit removed: back to the high layer ("[shaped] upgrade after X.Xs").
// 4. 5 % loss on the downlink for 15 s: NACKs repair it (nackCount rises) and the picture never stops for a second
//    (longest stretch without a newly decoded frame, sampled every 200 ms); freezes are reported. The loss is
//    `tc netem loss 5%` on the host end of the veth, or where the kernel has no netem, an nftables rule inside the
//    namespace that drops 5 % of what arrives from the host (`numgen random mod 100 < 5`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  assertNoPageProblems, describePage, launchChromium, openPage, poll, roomUrl, skipWithoutChromium, spkiHash,
  startServer, waitJoined,
} from './harness.mjs';
import { createNamespace, launchChromiumIn, skipWithoutRoot } from './netns.mjs';
import { inboundVideo, publisherLayers, setTileWidth, videoTrackOf } from './quality.mjs';

const TC = ['/usr/sbin/tc', '/sbin/tc', '/usr/bin/tc'].find((p) => fs.existsSync(p)) ?? null;
const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => fs.existsSync(p)) ?? null;
/** The third octet of this test's veth addresses (lan.test.mjs uses 11, reach.test.mjs 31). */
const NS_INDEX = 41;

function tc(...args) {
  return new Promise((resolve, reject) => execFile(TC, args, (err, stdout, stderr) => {
    if (err) reject(new Error(`tc ${args.join(' ')} failed: ${stderr || err.message}`));
    else resolve(stdout);
  }));
}

const seconds = (ms) => (ms / 1000).toFixed(1);

/**
 * Drops `percent` % of the packets on the viewer's downlink: netem on the host end of the veth, or an nftables
 * rule inside the namespace when this kernel has no netem. Resolves with `{how, off}`; `off()` lifts it.
 */
async function downlinkLoss(ns, percent, dir) {
  try {
    await tc('qdisc', 'replace', 'dev', ns.hostIf, 'root', 'netem', 'loss', `${percent}%`);
    return { how: `tc netem loss ${percent}% on ${ns.hostIf}`, off: () => tc('qdisc', 'del', 'dev', ns.hostIf, 'root') };
  } catch (err) {
    if (!NFT || !/unknown/i.test(err.message)) throw err;
  }
  const file = path.join(dir, 'loss.nft');
  fs.writeFileSync(file, `table inet esfu_loss {
  chain in {
    type filter hook input priority 0; policy accept;
    ip saddr ${ns.hostAddress} numgen random mod 100 < ${percent} drop
  }
}
`);
  const r = await ns.exec([NFT, '-f', file]);
  if (r.code !== 0) throw new Error(`nft in ${ns.name} failed: ${r.stderr}`);
  return {
    how: `nft numgen random drop ${percent}% in ${ns.name} (no netem in this kernel)`,
    off: async () => {
      const d = await ns.exec([NFT, 'delete', 'table', 'inet', 'esfu_loss']);
      if (d.code !== 0) throw new Error(`nft delete in ${ns.name} failed: ${d.stderr}`);
    },
  };
}

test('simulcast over a shaped downlink: downgrade, upgrade, and NACK repair under loss', { timeout: 420_000 }, async (t) => {
  if (skipWithoutChromium(t) || skipWithoutRoot(t)) return;
  if (!TC) {
    const msg = 'tc (iproute2) is missing: shaped-link browser test SKIPPED';
    console.error(`\n!!! ${msg} !!!\n`);
    t.skip(msg);
    return;
  }
  // The namespace comes first: edge-sfu reads the interface addresses when it starts.
  const ns = await createNamespace('shaped', NS_INDEX);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sfu-shaped-'));
  const certFile = path.join(dataDir, 'https-certificate.pem');
  let server = null;
  const browsers = [];
  t.after(async () => {
    await tc('qdisc', 'del', 'dev', ns.hostIf, 'root').catch(() => {});
    for (const b of browsers) await b.close().catch(() => {});
    await server?.stop();
    await ns.remove();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  // Listening and announcing ICE candidates on the host end of the veth only (HTTPS with a generated certificate,
  // as for any address other than loopback).
  server = await startServer({
    name: 'edge-sfu-shaped',
    baseArgs: ['--listen', `${ns.hostAddress}:0`, '--workers', '2', '--public-ip', ns.hostAddress],
    args: ['--data-dir', dataDir],
    caFile: certFile,
  });
  const trust = `--ignore-certificate-errors-spki-list=${spkiHash(fs.readFileSync(certFile, 'utf8'))}`;
  const viewerBrowser = await launchChromiumIn(ns, [trust]);
  browsers.push(viewerBrowser);
  const hostBrowser = await launchChromium([trust]);
  browsers.push(hostBrowser);

  const room = `shaped-${process.pid}`;
  const url = (name, options) => {
    const u = new URL(roomUrl(server.url, room, name));
    for (const [k, v] of Object.entries(options)) u.searchParams.set(k, v);
    return u.href;
  };
  const pub = await openPage(hostBrowser, url('pub', { video: '1280x720', mic: '0' }), 'pub');
  const pubId = await waitJoined(pub);
  const viewer = await openPage(viewerBrowser, url('viewer', { camera: '0', mic: '0' }), 'viewer');
  await waitJoined(viewer);

  const explain = async (err) => {
    const v = viewer.received.filter((m) => m.type === 'mediaStats').at(-1);
    err.message += `\nviewer: ${await describePage(viewer)}\nviewer's last mediaStats: ${JSON.stringify(v ?? null)}`
      + `\npub layers: ${JSON.stringify(await publisherLayers(pub).catch(() => null))}`
      + `\ntc: ${await tc('-s', 'qdisc', 'show', 'dev', ns.hostIf).catch((e) => e.message)}`
      + `\nserver log (${server.logFile}):\n${server.logTail(30)}`;
    return err;
  };
  const trackId = await poll(() => videoTrackOf(viewer, pubId), { timeout: 30_000, what: 'viewer receives pub\'s camera' })
    .catch(async (err) => { throw await explain(err); });
  const size = await setTileWidth(viewer, pubId, 1280);
  await poll(() => viewer.evaluate(({ id, size }) => `${window.edgeSfu.reportedTileSize(id)}` === `${size}`, { id: trackId, size }),
    { timeout: 10_000, what: `viewer reported its ${size.join('x')} tile` });
  // The Stats overlay asks for mediaStats every second: the failure messages show the SFU's view.
  await viewer.click('#stats-toggle');

  /** Polls until the viewer decodes new frames whose width passes `ok`; resolves with the milliseconds it took. */
  const until = async (ok, what, timeout) => {
    const start = Date.now();
    const first = await inboundVideo(viewer, trackId);
    try {
      await poll(async () => {
        const v = await inboundVideo(viewer, trackId);
        return v && ok(v.frameWidth) && v.framesDecoded > (first?.framesDecoded ?? 0);
      }, { timeout, interval: 100, what });
    } catch (err) {
      throw await explain(err);
    }
    return Date.now() - start;
  };

  const high = (w) => w >= 1280;
  const low = (w) => w > 0 && w <= 320;
  const upAtStart = await until(high, 'viewer decodes the high layer (1280 wide) on the free link', 60_000);
  console.log(`[shaped] high layer on the free link after ${seconds(upAtStart)}s`);

  // 2. The viewer's downlink at 300 kbit/s.
  await tc('qdisc', 'replace', 'dev', ns.hostIf, 'root', 'tbf', 'rate', '300kbit', 'burst', '32kbit', 'latency', '100ms');
  const down = await until(low, 'viewer decodes the low layer (at most 320 wide) with 300 kbit/s', 60_000);
  console.log(`[shaped] downgrade after ${seconds(down)}s (tbf 300 kbit/s on the viewer's downlink)`);

  // 3. The limit lifted.
  await tc('qdisc', 'del', 'dev', ns.hostIf, 'root');
  const up = await until(high, 'viewer decodes the high layer again once the limit is lifted', 90_000);
  console.log(`[shaped] upgrade after ${seconds(up)}s (limit removed)`);

  // 4. 5 % loss for 15 s, at the high layer.
  const before = await inboundVideo(viewer, trackId);
  const loss = await downlinkLoss(ns, 5, dataDir);
  let samples;
  try {
    // Sampled inside the page (no round trip per sample): [ms since start, framesDecoded, frameWidth].
    samples = await viewer.evaluate(async ({ trackId, duration, every }) => {
      const c = window.edgeSfu;
      const track = c.remoteTracks.get(trackId).track;
      const out = [];
      const t0 = performance.now();
      while (performance.now() - t0 < duration) {
        const report = await c.pc.getStats(track);
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') out.push([performance.now() - t0, s.framesDecoded ?? 0, s.frameWidth ?? 0]);
        });
        await new Promise((r) => setTimeout(r, every));
      }
      return out;
    }, { trackId, duration: 15_000, every: 200 });
  } finally {
    await loss.off();
  }
  const after = await inboundVideo(viewer, trackId);
  // The longest time between two samples that saw new frames (at least the 200 ms sampling period), counting the
  // end of the window.
  let longest = 0;
  let lastRise = samples[0][0];
  for (let i = 1; i < samples.length; i++) {
    if (samples[i][1] > samples[i - 1][1]) {
      longest = Math.max(longest, samples[i][0] - lastRise);
      lastRise = samples[i][0];
    }
  }
  longest = Math.max(longest, samples.at(-1)[0] - lastRise);
  const widths = [...new Set(samples.map((s) => s[2]))].join('/');
  const nacks = after.nackCount - before.nackCount;
  const freezes = after.freezeCount - before.freezeCount;
  const frozen = after.totalFreezesDuration - before.totalFreezesDuration;
  const frames = after.framesDecoded - before.framesDecoded;
  console.log(`[shaped] 5% loss (${loss.how}) for 15s: longest stretch without a new frame ${Math.round(longest)} ms, ${frames} frames `
    + `decoded (widths ${widths}), freezes +${freezes} (+${frozen.toFixed(2)} s), nackCount +${nacks}, `
    + `packetsLost +${after.packetsLost - before.packetsLost}, pliCount +${after.pliCount - before.pliCount}`);
  assert.ok(samples.length >= 50, `only ${samples.length} samples in 15 s`);
  assert.ok(nacks > 0, `the viewer sent no NACK under 5% loss (nackCount ${before.nackCount} -> ${after.nackCount})`);
  assert.ok(longest < 1000, `the picture stopped for ${Math.round(longest)} ms under 5% loss (samples: ${JSON.stringify(samples.map((s) => [Math.round(s[0]), s[1]]))})`);
  assertNoPageProblems(pub, viewer);
});
