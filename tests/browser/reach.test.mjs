// Reach from networks that block UDP: ICE over TCP and TURN relays (Debian's coturn), with real Chromium.
//
// A participant runs in a network namespace the test creates (standing in for a laptop on a restrictive network);
// nftables inside that namespace drops what such networks drop. It joins over HTTPS/WSS and exchanges media with a
// participant on the host, and its selected ICE candidate pair says which path carried the call:
// - UDP to the SFU dropped: a TCP pair (RFC 6544 passive candidate of the SFU);
// - everything dropped but coturn's UDP, TCP or TLS port: a relay candidate over that transport, with credentials
//   the SFU minted from the secret it shares with coturn (`use-auth-secret`).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  assertNoPageProblems, chromiumPresent, expectMediaFrom, launchChromium, openPage, roomUrl, skipWithoutChromium,
  spkiHash, startServer, waitJoined,
} from './harness.mjs';
import { createNamespace, launchChromiumIn, rootAvailable, skipWithoutRoot } from './netns.mjs';

const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => fs.existsSync(p)) ?? null;
const TURNSERVER = ['/usr/bin/turnserver', '/usr/sbin/turnserver'].find((p) => fs.existsSync(p)) ?? null;
/** coturn's ports, away from the defaults in case a system coturn listens there. */
const TURN_PORT = 13478;
const TURNS_PORT = 15349;
const TURN_SECRET = 'edge-sfu-reach-test-secret';

function loudSkip(t, msg) {
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
}

/** The firewall inside the namespace: towards the host, allow only `allow` (nft set syntax), drop the rest. */
async function firewall(ns, allow, dir) {
  const file = path.join(dir, 'rules.nft');
  const accepts = allow.map((rule) => `    ip daddr ${ns.hostAddress} ${rule} accept`).join('\n');
  fs.writeFileSync(file, `flush ruleset
table inet reach {
  chain out {
    type filter hook output priority 0; policy accept;
${accepts}
    ip daddr ${ns.hostAddress} drop
  }
}
`);
  const r = await ns.exec([NFT, '-f', file]);
  if (r.code !== 0) throw new Error(`nft in ${ns.name} failed: ${r.stderr}`);
}

/** The page's selected candidate pair, with both candidates. */
function selectedPair(page) {
  return page.evaluate(async () => {
    const report = await window.edgeSfu.pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const p = report.get(s.selectedCandidatePairId);
        pair = { local: report.get(p.localCandidateId), remote: report.get(p.remoteCandidateId) };
      }
    });
    return pair;
  });
}

/** Starts coturn on the host end of the veth, sharing `TURN_SECRET` with the SFU; resolves once it listens. */
async function startCoturn(ns, dir, certFile, keyFile) {
  const conf = path.join(dir, 'turnserver.conf');
  fs.writeFileSync(conf, [
    `listening-ip=${ns.hostAddress}`,
    `relay-ip=${ns.hostAddress}`,
    `listening-port=${TURN_PORT}`,
    `tls-listening-port=${TURNS_PORT}`,
    'min-port=49900',
    'max-port=49999',
    'use-auth-secret',
    `static-auth-secret=${TURN_SECRET}`,
    'realm=edge-sfu.test',
    `cert=${certFile}`,
    `pkey=${keyFile}`,
    // The SFU is on this machine: allow exactly its address as a peer.
    'allow-loopback-peers',
    `allowed-peer-ip=${ns.hostAddress}`,
    'no-multicast-peers',
    'no-dtls',
    'no-cli',
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
    `userdb=${path.join(dir, 'turndb')}`,
    'log-file=stdout',
    'simple-log',
    // Logs each allocation with its user name.
    'verbose',
    '',
  ].join('\n'));
  const logFile = path.join(dir, 'turnserver.log');
  const log = fs.openSync(logFile, 'w');
  const proc = spawn(TURNSERVER, ['-c', conf], { stdio: ['ignore', log, log] });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = fs.readFileSync(logFile, 'utf8');
    if (/TLS listener opened on/i.test(text) || /Total General servers/i.test(text)) break;
    if (proc.exitCode !== null) throw new Error(`turnserver exited (${proc.exitCode}):\n${text}`);
    if (Date.now() > deadline) throw new Error(`turnserver did not start within 15 s:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    logFile,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

function run(file, args) {
  return new Promise((resolve) => execFile(file, args, (err, stdout, stderr) => resolve({ err, stdout, stderr })));
}

describe('reach from networks that block UDP', { skip: !chromiumPresent && 'chromium missing' }, () => {
  const ctx = {};

  before(async () => {
    if (!chromiumPresent || !rootAvailable || !NFT) return;
    ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'esfu-reach-'));
    ctx.ns = await createNamespace('reach', 31);
    const host = ctx.ns.hostAddress;
    const turnUrls = [
      `turn:${host}:${TURN_PORT}?transport=udp`,
      `turn:${host}:${TURN_PORT}?transport=tcp`,
      `turns:${host}:${TURNS_PORT}?transport=tcp`,
    ];
    // Listening on the veth address: HTTPS with a generated certificate. Candidates only on the veth (no other
    // address of this machine is ever used).
    ctx.server = await startServer({
      name: 'edge-sfu-reach',
      baseArgs: ['--listen', `${host}:0`, '--workers', '2', '--public-ip', host],
      args: ['--data-dir', ctx.dir, '--turn-secret', TURN_SECRET, ...turnUrls.flatMap((u) => ['--turn-url', u])],
      caFile: path.join(ctx.dir, 'https-certificate.pem'),
    });
    assert.match(ctx.server.url, /^https:\/\//, 'a non-loopback listener serves HTTPS');
    const certFile = path.join(ctx.dir, 'https-certificate.pem');
    const keyFile = path.join(ctx.dir, 'https-key.pem');
    const trust = `--ignore-certificate-errors-spki-list=${spkiHash(fs.readFileSync(certFile, 'utf8'))}`;
    ctx.hostBrowser = await launchChromium([trust]);
    ctx.nsBrowser = await launchChromiumIn(ctx.ns, [trust]);
    if (TURNSERVER) ctx.coturn = await startCoturn(ctx.ns, ctx.dir, certFile, keyFile);
  });

  after(async () => {
    await ctx.nsBrowser?.close().catch(() => {});
    await ctx.hostBrowser?.close().catch(() => {});
    await ctx.coturn?.stop();
    await ctx.server?.stop();
    await ctx.ns?.remove();
    if (ctx.dir) fs.rmSync(ctx.dir, { recursive: true, force: true });
  });

  function skipped(t, { turn = false } = {}) {
    if (skipWithoutChromium(t) || skipWithoutRoot(t)) return true;
    if (!NFT) {
      loudSkip(t, 'nft (nftables) is missing: ICE-TCP/TURN browser tests SKIPPED (apt-get install nftables)');
      return true;
    }
    if (turn && !TURNSERVER) {
      loudSkip(t, 'turnserver (coturn) is missing: TURN browser tests SKIPPED (apt-get install coturn)');
      return true;
    }
    return false;
  }

  /** The namespace participant and a host participant exchange media; returns the namespace page's pair. */
  async function call(room) {
    const outside = await openPage(ctx.nsBrowser, roomUrl(ctx.server.url, room, 'outside'), `${room}/outside`);
    const outsideId = await waitJoined(outside);
    const inside = await openPage(ctx.hostBrowser, roomUrl(ctx.server.url, room, 'inside'), `${room}/inside`);
    const insideId = await waitJoined(inside);
    await expectMediaFrom(outside, [insideId], { label: `${room}/outside` });
    await expectMediaFrom(inside, [outsideId], { label: `${room}/inside` });
    const pair = await selectedPair(outside);
    assertNoPageProblems(outside, inside);
    await outside.context().close();
    await inside.context().close();
    return pair;
  }

  test('with UDP to the SFU dropped, a browser joins over ICE-TCP', async (t) => {
    if (skipped(t)) return;
    // Every TCP port but coturn's: the server hands out TURN servers too, and a relay must not be the way in.
    await firewall(ctx.ns, [`tcp dport != { ${TURN_PORT}, ${TURNS_PORT} }`], ctx.dir);
    const pair = await call('ice-tcp');
    assert.ok(pair, 'a selected candidate pair');
    assert.notEqual(pair.local.candidateType, 'relay', `local candidate ${JSON.stringify(pair.local)}`);
    assert.equal(pair.remote.protocol, 'tcp', `remote candidate ${JSON.stringify(pair.remote)}`);
    assert.equal(pair.remote.tcpType, 'passive');
    assert.equal(pair.remote.address, ctx.ns.hostAddress);
    assert.equal(pair.local.protocol, 'tcp');
    const stats = await ctx.server.stats();
    console.log(`ICE-TCP pair: ${pair.local.address}:${pair.local.port} -> ${pair.remote.address}:${pair.remote.port}; drops ${JSON.stringify(stats.drops)}`);
  });

  const port = () => new URL(ctx.server.url).port;
  for (const [transport, rules] of [
    ['udp', () => [`tcp dport ${port()}`, `udp dport ${TURN_PORT}`]],
    ['tcp', () => [`tcp dport { ${port()}, ${TURN_PORT} }`]],
    ['tls', () => [`tcp dport { ${port()}, ${TURNS_PORT} }`]],
  ]) {
    test(`with only coturn's ${transport.toUpperCase()} port reachable, a browser joins through the relay`, async (t) => {
      if (skipped(t, { turn: true })) return;
      await firewall(ctx.ns, rules(), ctx.dir);
      const pair = await call(`turn-${transport}`);
      assert.ok(pair, 'a selected candidate pair');
      assert.equal(pair.local.candidateType, 'relay', `local candidate ${JSON.stringify(pair.local)}`);
      assert.equal(pair.local.relayProtocol, transport);
      assert.equal(pair.remote.address, ctx.ns.hostAddress);
      // The allocation was made with the SFU-minted user name "<expiry>:<peer id>".
      const log = fs.readFileSync(ctx.coturn.logFile, 'utf8');
      assert.match(log, /user <\d{10,}:\d+>: incoming packet ALLOCATE processed, success/,
        'coturn allocated a relay for a minted TURN REST user name');
      console.log(`TURN/${transport}: relay ${pair.local.address}:${pair.local.port} -> ${pair.remote.address}:${pair.remote.port}`);
    });
  }

  test('a TURN credential minted with another secret is refused by coturn', async (t) => {
    if (skipped(t, { turn: true })) return;
    // What the SFU's minting would give with a wrong secret: coturn must refuse it, so the relay tests above
    // prove the SFU's credentials are the ones that work.
    const expiry = Math.floor(Date.now() / 1000) + 600;
    const user = `${expiry}:1`;
    const wrong = (await import('node:crypto')).createHmac('sha1', 'not-the-secret').update(user).digest('base64');
    const uclient = ['/usr/bin/turnutils_uclient'].find((p) => fs.existsSync(p));
    if (!uclient) {
      loudSkip(t, 'turnutils_uclient (coturn) is missing: wrong-credential check SKIPPED');
      return;
    }
    const r = await run(uclient, ['-t', '-y', '-n', '1', '-m', '1', '-u', user, '-w', wrong, '-p', String(TURN_PORT), ctx.ns.hostAddress]);
    const out = `${r.stdout}\n${r.stderr}`;
    assert.ok(r.err, `turnutils_uclient succeeded with a wrong credential:\n${out}`);
    assert.match(out, /Cannot complete Allocation/, `refused for its credential, not for another reason:\n${out}`);
  });
});
