// IPv6: a Chromium in a network namespace that has only IPv6 addresses (unique local, over a veth pair) and one in
// a namespace that has only IPv4 addresses join the same room on the same dual-stack server and exchange media.
// The server listens on [::] (one socket for both families), announces one host candidate per family given with
// --public-ip (twice: IPv4 and IPv6), and each browser's selected ICE pair ends at the server's address of its own
// family.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  assertNoPageProblems, describePage, expectMediaFrom, openPage, poll, roomUrl, skipWithoutChromium, spkiHash,
  startServer, waitJoined,
} from './harness.mjs';
import { createNamespace, createNamespace6, launchChromiumIn, skipWithoutRoot } from './netns.mjs';

/** The page's nominated ICE pair: the local and remote (SFU) candidate addresses, and bytes sent on it. */
async function selectedPair(page) {
  return page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const local = pair && report.get(pair.localCandidateId);
    const remote = pair && report.get(pair.remoteCandidateId);
    return remote && local
      ? { local: local.address ?? local.ip, remote: remote.address ?? remote.ip, bytesSent: pair.bytesSent }
      : null;
  });
}

/** Every local candidate address the page's connection gathered. */
async function localCandidates(page) {
  return page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    const out = [];
    report.forEach((s) => { if (s.type === 'local-candidate') out.push(`${s.protocol} ${s.address ?? s.ip}`); });
    return out;
  });
}

test('an IPv6-only browser and an IPv4-only browser exchange media', async (t) => {
  if (skipWithoutChromium(t) || skipWithoutRoot(t)) return;
  const ns4 = await createNamespace('ip4', 61);
  t.after(() => ns4.remove());
  const ns6 = await createNamespace6('ip6', 0x62);
  t.after(() => ns6.remove());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sfu-ipv6-'));
  const certFile = path.join(dataDir, 'https-certificate.pem');
  let server = null;
  const browsers = [];
  t.after(async () => {
    for (const b of browsers) await b.close().catch(() => {});
    await server?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  server = await startServer({
    name: 'edge-sfu-ipv6',
    baseArgs: ['--listen', '[::]:0', '--workers', '2', '--public-ip', ns4.hostAddress, '--public-ip', ns6.hostAddress],
    args: ['--data-dir', dataDir],
    caFile: certFile,
  });
  const port = new URL(server.url).port;
  const trust = `--ignore-certificate-errors-spki-list=${spkiHash(fs.readFileSync(certFile, 'utf8'))}`;
  const v6Browser = await launchChromiumIn(ns6, [trust]);
  browsers.push(v6Browser);
  const v4Browser = await launchChromiumIn(ns4, [trust]);
  browsers.push(v4Browser);

  // Each page comes from the server's address of its own family: the signaling socket is dual-stack too.
  const v6Page = await openPage(v6Browser, roomUrl(`https://[${ns6.hostAddress}]:${port}/`, 'ipv6', 'v6'), 'v6');
  const v4Page = await openPage(v4Browser, roomUrl(`https://${ns4.hostAddress}:${port}/`, 'ipv6', 'v4'), 'v4');
  const joined = async (page, label) => {
    try {
      return await waitJoined(page);
    } catch (err) {
      err.message += `\n${label}: ${await describePage(page)}\nserver log:\n${server.logTail(60)}`;
      throw err;
    }
  };
  const v6Id = await joined(v6Page, 'v6');
  const v4Id = await joined(v4Page, 'v4');
  await expectMediaFrom(v6Page, [v4Id], { label: 'v6' });
  await expectMediaFrom(v4Page, [v6Id], { label: 'v4' });

  // Chromium gathered its IPv6 address in the IPv6-only namespace, and its media goes to the SFU's IPv6 address.
  const v6Pair = await poll(() => selectedPair(v6Page), { what: "the IPv6 page's selected ICE pair" });
  const gathered = await localCandidates(v6Page);
  assert.ok(gathered.some((c) => c.includes(ns6.nsAddress)), `IPv6 host candidate gathered: ${gathered.join(', ')}`);
  assert.equal(v6Pair.remote, ns6.hostAddress, `IPv6 page's pair: ${JSON.stringify(v6Pair)}`);
  assert.equal(v6Pair.local, ns6.nsAddress, `IPv6 page's pair: ${JSON.stringify(v6Pair)}`);
  assert.ok(v6Pair.bytesSent > 0);
  const v4Pair = await poll(() => selectedPair(v4Page), { what: "the IPv4 page's selected ICE pair" });
  assert.equal(v4Pair.remote, ns4.hostAddress, `IPv4 page's pair: ${JSON.stringify(v4Pair)}`);
  assert.ok(v4Pair.bytesSent > 0);

  // The server saw no datagram it could not place.
  const stats = await server.stats();
  assert.equal(stats.drops?.unknown_source ?? 0, 0, `drops: ${JSON.stringify(stats.drops)}`);
  assertNoPageProblems(v6Page, v4Page);
});
