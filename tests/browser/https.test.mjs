// HTTPS and WSS in a real browser: edge-sfu with `--https` and its generated self-signed certificate, which
// Chromium accepts by its public key hash (as a phone does once its user accepted it); two participants exchange
// media over it; a restart on the same data directory presents the same certificate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  assertNoPageProblems, expectMediaFrom, launchChromium, openPage, poll, roomUrl, skipWithoutChromium, spkiHash,
  startServer, waitJoined,
} from './harness.mjs';

/** Page state that shows the page and its signaling run over TLS. */
async function transportOf(page) {
  return page.evaluate(() => ({
    protocol: location.protocol,
    secure: window.isSecureContext,
    ws: window.edgeSfu?.ws?.url ?? null,
  }));
}

test('two participants exchange media over HTTPS and WSS; the certificate survives a restart', async (t) => {
  if (skipWithoutChromium(t)) return;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sfu-https-'));
  const certFile = path.join(dataDir, 'https-certificate.pem');
  const options = { name: 'edge-sfu-https', args: ['--https', '--data-dir', dataDir], caFile: certFile };
  let server = await startServer(options);
  let browser = null;
  t.after(async () => {
    await browser?.close().catch(() => {});
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  const pem = fs.readFileSync(certFile, 'utf8');
  const { fingerprint256 } = new crypto.X509Certificate(pem);
  // The startup log names the certificate by the fingerprint a browser shows for it.
  await poll(() => server.logTail(400).includes(fingerprint256), { what: `the fingerprint ${fingerprint256} in the log` });

  browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(pem)}`]);
  const ana = await openPage(browser, roomUrl(server.url, 'tls', 'ana'), 'ana');
  const ben = await openPage(browser, roomUrl(server.url, 'tls', 'ben'), 'ben');
  const [anaId, benId] = [await waitJoined(ana), await waitJoined(ben)];
  for (const page of [ana, ben]) {
    const tr = await transportOf(page);
    assert.equal(tr.protocol, 'https:');
    assert.equal(tr.secure, true);
    assert.match(tr.ws, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
  }
  await expectMediaFrom(ana, [benId], { label: 'ana' });
  await expectMediaFrom(ben, [anaId], { label: 'ben' });
  const stats = await server.stats();
  assert.equal(stats.peers, 2);
  assertNoPageProblems(ana, ben);
  await browser.close();
  browser = null;
  await server.stop();

  // Same data directory: the same certificate file, so a browser that accepted it is not asked again.
  server = await startServer(options);
  assert.equal(fs.readFileSync(certFile, 'utf8'), pem);
  await poll(() => server.logTail(400).includes(fingerprint256), { what: 'the same fingerprint after the restart' });
  browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(pem)}`]);
  const again = await openPage(browser, roomUrl(server.url, 'tls', 'ana'), 'ana-again');
  await waitJoined(again);
  assert.equal((await transportOf(again)).ws.startsWith('wss://'), true);
  assertNoPageProblems(again);
});
