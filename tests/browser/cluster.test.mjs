// Two edge-sfu nodes of one cluster (`--cluster`, a real Redis: Debian's `redis-server`, started here on a free
// loopback port without persistence): a Chromium page on each node joins the same room, and each decodes the other's
// camera and plays its microphone: the media crosses the trunk between the nodes. Skipped loudly without Chromium or
// redis-server (scripts/test installs both).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';

import {
  chromiumPresent, skipWithoutChromium, startServer, launchChromium, openPage, waitJoined, expectMediaFrom, roomUrl,
  poll, assertNoPageProblems,
} from './harness.mjs';

const redisPresent = spawnSync('redis-server', ['--version']).status === 0;

/** A free loopback TCP port. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `redis-server` on `port` and waits until it accepts connections. */
async function startRedis(port) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' });
  await poll(() => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  }), { timeout: 10_000, what: `redis-server listening on ${port}` });
  return proc;
}

const fx = { redis: null, nodes: [], browser: null };

before(async () => {
  if (!chromiumPresent || !redisPresent) return;
  const port = await freePort();
  fx.redis = await startRedis(port);
  for (const id of ['paris', 'lyon']) {
    fx.nodes.push(await startServer({
      name: `edge-sfu-cluster-${id}`,
      args: ['--cluster', `redis://127.0.0.1:${port}`, '--node-id', id, '--cluster-ttl', '3'],
    }));
  }
  fx.browser = await launchChromium();
});

after(async () => {
  await fx.browser?.close().catch(() => {});
  for (const node of fx.nodes) await node.stop();
  fx.redis?.kill('SIGKILL');
});

test('Chromium pages on two nodes see and hear each other', { timeout: 120_000 }, async (t) => {
  if (skipWithoutChromium(t)) return;
  if (!redisPresent) {
    console.log('SKIPPED: redis-server is not installed (scripts/test installs it)');
    return t.skip('redis-server is not installed');
  }
  const room = `cluster-${process.pid}`;
  const [paris, lyon] = fx.nodes;
  const ana = await openPage(fx.browser, roomUrl(paris.url, room, 'ana'), 'ana@paris');
  const anaId = await waitJoined(ana);
  const bo = await openPage(fx.browser, roomUrl(lyon.url, room, 'bo'), 'bo@lyon');
  const boId = await waitJoined(bo);
  assert.notEqual(anaId, boId, 'peer ids are unique across nodes');
  await Promise.all([
    expectMediaFrom(ana, [boId], { label: 'ana@paris', timeout: 45_000 }),
    expectMediaFrom(bo, [anaId], { label: 'bo@lyon', timeout: 45_000 }),
  ]);

  // The media crossed on the trunk between the two nodes, each track once.
  for (const [node, far] of [[paris, 'lyon'], [lyon, 'paris']]) {
    const stats = await node.stats();
    const trunk = (stats.trunks ?? []).find((tr) => tr.node.startsWith(`${far}/`));
    assert.ok(trunk?.connected, `a connected trunk towards ${far}: ${JSON.stringify(stats.trunks)}`);
    assert.equal(trunk.tracksIn, 2, `the far member's camera and microphone: ${JSON.stringify(trunk)}`);
    assert.ok(trunk.packetsIn > 0 && trunk.packetsOut > 0, JSON.stringify(trunk));
  }
  assertNoPageProblems(ana, bo);

  // One leaves: the other page drops its tile.
  await bo.close();
  await poll(() => ana.evaluate((id) => !document.querySelector(`.tile[data-peer-id="${id}"]`), boId),
    { timeout: 20_000, what: 'bo\'s tile gone from ana\'s page' });
  await ana.close();
});
