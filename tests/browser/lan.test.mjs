// The `--lan` trial: the real binary started with `--lan` prints its LAN URLs; a "phone" (Chromium in its own
// network namespace, reaching this machine only over a veth pair) opens the printed https:// URL, accepts the
// generated certificate, joins with camera and microphone, and exchanges media with a participant on this machine,
// over the veth.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  assertNoPageProblems, describePage, expectMediaFrom, launchChromium, openPage, poll, roomUrl, skipWithoutChromium,
  spkiHash, startServer, waitJoined,
} from './harness.mjs';
import { createNamespace, launchChromiumIn, skipWithoutRoot } from './netns.mjs';

/** The nominated ICE pair of a page: the remote (SFU) address and port it sends media to. */
async function selectedRemote(page) {
  return page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const remote = pair && report.get(pair.remoteCandidateId);
    return remote ? { address: remote.address ?? remote.ip, port: remote.port, bytesSent: pair.bytesSent } : null;
  });
}

test('--lan: a phone on another network opens the printed URL and exchanges media', async (t) => {
  if (skipWithoutChromium(t) || skipWithoutRoot(t)) return;
  // The namespace comes first: edge-sfu reads the interface addresses when it starts.
  const ns = await createNamespace('lan', 11);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sfu-lan-'));
  const certFile = path.join(dataDir, 'https-certificate.pem');
  let server = null;
  const browsers = [];
  t.after(async () => {
    for (const b of browsers) await b.close().catch(() => {});
    await server?.stop();
    await ns.remove();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  // Port 0: --lan keeps the port of --listen, and prints the one it got.
  server = await startServer({
    name: 'edge-sfu-lan',
    baseArgs: ['--lan', '--listen', '0.0.0.0:0', '--workers', '2'],
    args: ['--data-dir', dataDir],
    caFile: certFile,
  });
  const port = new URL(server.url).port;
  assert.notEqual(port, '0');
  const printed = server.stdout();
  const lanUrls = [...printed.matchAll(/^ {2}(https:\/\/\S+)$/gm)].map((m) => m[1]);
  const phoneUrl = `https://${ns.hostAddress}:${port}/`;
  assert.ok(lanUrls.includes(phoneUrl), `the LAN URLs printed should include ${phoneUrl}:\n${printed}`);
  assert.ok(lanUrls.every((u) => !u.includes('127.0.0.1')), `no loopback URL among the LAN URLs:\n${printed}`);
  assert.match(printed, /certificate SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}\n/);
  assert.match(printed, /scan to open https:\/\/\S+:\n[\u2580\u2584\u2588 ]+\n/, 'a QR code drawn with half blocks');

  const trust = `--ignore-certificate-errors-spki-list=${spkiHash(fs.readFileSync(certFile, 'utf8'))}`;
  const phoneBrowser = await launchChromiumIn(ns, [trust]);
  browsers.push(phoneBrowser);
  const hostBrowser = await launchChromium([trust]);
  browsers.push(hostBrowser);

  const phone = await openPage(phoneBrowser, roomUrl(phoneUrl, 'lan', 'phone'), 'phone');
  assert.deepEqual(await phone.evaluate(() => [location.protocol, window.isSecureContext]), ['https:', true]);
  const laptop = await openPage(hostBrowser, roomUrl(server.url, 'lan', 'laptop'), 'laptop');
  const joined = async (page, label) => {
    try {
      return await waitJoined(page);
    } catch (err) {
      err.message += `\n${label}: ${await describePage(page)}\nserver log:\n${server.logTail(60)}`;
      throw err;
    }
  };
  const phoneId = await joined(phone, 'phone');
  const laptopId = await joined(laptop, 'laptop');
  await expectMediaFrom(phone, [laptopId], { label: 'phone' });
  await expectMediaFrom(laptop, [phoneId], { label: 'laptop' });

  // The phone's media goes to the SFU's address on the veth: it crossed the "LAN".
  const remote = await poll(() => selectedRemote(phone), { what: 'the phone\'s selected ICE pair' });
  assert.equal(remote.address, ns.hostAddress, `phone's selected pair: ${JSON.stringify(remote)}\n${await describePage(phone)}`);
  assert.ok(remote.bytesSent > 0);
  assertNoPageProblems(phone, laptop);
});
