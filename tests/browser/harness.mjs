// Shared helpers of the browser end-to-end tests: start the real edge-sfu binary, launch headless
// Chromium (playwright-core, the system's /usr/bin/chromium), open pages, poll WebRTC stats.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The Chromium the tests drive (Debian's package). */
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** The edge-sfu binary under test. */
export const EDGE_SFU_BIN = path.resolve(here, process.env.EDGE_SFU_BIN || '../../target/debug/edge-sfu');

/** Chromium flags: headless, fake camera/mic/screen, loopback ICE, no network chatter. */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-renderer-backgrounding',
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
];

/**
 * Skips the test (loudly) when Chromium is not installed. Returns true when skipped.
 * @param {import('node:test').TestContext} t
 */
export function skipWithoutChromium(t) {
  if (fs.existsSync(CHROMIUM)) return false;
  const msg = `${CHROMIUM} is missing: browser end-to-end tests SKIPPED (apt-get install chromium)`;
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
  return true;
}

/** Whether Chromium is installed (for `describe(..., { skip })`). */
export const chromiumPresent = fs.existsSync(CHROMIUM);

/**
 * Starts `edge-sfu --listen 127.0.0.1:0 --workers 2 --public-ip 127.0.0.1` (loopback-only ICE) and waits for its ready line.
 * `args` are added to that command line. Its stdout and stderr go to a log file whose path is `server.logFile`.
 * @returns {Promise<{url: string, proc: import('node:child_process').ChildProcess, logFile: string, stop: () => Promise<void>, stats: () => Promise<any>, logTail: (n?: number) => string}>}
 */
export async function startServer({ name = 'edge-sfu', args = [] } = {}) {
  if (!fs.existsSync(EDGE_SFU_BIN)) {
    throw new Error(`edge-sfu binary not found at ${EDGE_SFU_BIN}: build it (cargo build) or set EDGE_SFU_BIN`);
  }
  const logFile = path.join(os.tmpdir(), `${name}-${process.pid}-${Date.now()}.log`);
  const log = fs.createWriteStream(logFile);
  const proc = spawn(EDGE_SFU_BIN, ['--listen', '127.0.0.1:0', '--workers', '2', '--public-ip', '127.0.0.1', ...args], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stderr.pipe(log, { end: false });
  let exited = null;
  const exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => { exited = { code, signal }; resolve(); }));
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`edge-sfu printed no ready line within 30 s (log: ${logFile})`)), 30_000);
    proc.stdout.on('data', (d) => {
      log.write(d);
      buf += d.toString();
      const m = buf.match(/edge-sfu ready: (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].endsWith('/') ? m[1] : `${m[1]}/`);
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`edge-sfu exited before it was ready (code ${code}, signal ${signal}); log ${logFile}:\n${tail(logFile)}`));
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  return {
    url,
    proc,
    logFile,
    logTail: (n) => tail(logFile, n),
    stats: async () => {
      const res = await fetch(new URL('/api/stats', url));
      if (!res.ok) throw new Error(`/api/stats answered ${res.status}`);
      return res.json();
    },
    stop: async () => {
      if (exited) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exitPromise;
      clearTimeout(t);
      log.end();
    },
  };
}

function tail(file, n = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Launches headless Chromium through playwright-core.
 * @param {string[]} [extraArgs]
 */
export async function launchChromium(extraArgs = []) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    // playwright's own --headless would clash with --headless=new.
    ignoreDefaultArgs: ['--headless'],
    timeout: 60_000,
  });
}

/**
 * Opens a page in a fresh browser context (own storage), collecting console errors for diagnostics.
 * @param {import('playwright-core').Browser} browser
 * @param {string} url
 * @param {string} label prefix for forwarded console lines
 */
export async function openPage(browser, url, label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.consoleLines = [];
  page.problems = [];
  page.on('console', (m) => {
    const line = `[${label}] ${m.type()}: ${m.text()}`;
    page.consoleLines.push(line);
    if (/edge-sfu error/.test(m.text())) page.problems.push(line);
    if (page.consoleLines.length > 400) page.consoleLines.shift();
    if (process.env.BROWSER_LOG) console.error(line);
  });
  page.on('pageerror', (e) => {
    const line = `[${label}] pageerror: ${e.message}`;
    page.consoleLines.push(line);
    page.problems.push(line);
    console.error(line);
  });
  await page.goto(url);
  return page;
}

/**
 * Polls `fn` until it returns a truthy value, or fails after `timeout` ms with the last value seen.
 * @template T
 * @param {() => Promise<T>|T} fn
 * @param {{timeout?: number, interval?: number, what?: string}} [opts]
 * @returns {Promise<T>}
 */
export async function poll(fn, { timeout = 20_000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? ` (last error: ${lastErr.message})` : ` (last value: ${JSON.stringify(last)})`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Fails if any of the pages threw an uncaught exception or got an `error` from the SFU (the pages log
 * those as `edge-sfu error <code> <message>`).
 * @param {...import('playwright-core').Page} pages
 */
export function assertNoPageProblems(...pages) {
  const problems = pages.flatMap((p) => p.problems ?? []);
  if (problems.length) throw new Error(`errors in the pages:\n${problems.join('\n')}`);
}

/** Waits until the page's client has joined; returns its peer id. */
export async function waitJoined(page, timeout = 20_000) {
  await page.waitForFunction(() => window.edgeSfu && window.edgeSfu.state === 'joined', null, { timeout });
  return page.evaluate(() => window.edgeSfu.peerId);
}

/**
 * Per remote track received by the page: its peer, kind, source and inbound-rtp counters.
 * @param {import('playwright-core').Page} page
 */
export async function remoteMedia(page) {
  return page.evaluate(async () => {
    const c = window.edgeSfu;
    if (!c || !c.pc) return [];
    const report = await c.pc.getStats();
    const inbound = [];
    report.forEach((s) => { if (s.type === 'inbound-rtp') inbound.push(s); });
    return [...c.remoteTracks.values()].map((rt) => {
      const s = inbound.find((x) => x.trackIdentifier === rt.track.id) || inbound.find((x) => x.mid === rt.mid);
      return {
        peerId: rt.peerId,
        trackId: rt.trackId,
        kind: rt.kind,
        source: rt.source,
        mid: rt.mid,
        framesDecoded: s?.framesDecoded ?? 0,
        packetsReceived: s?.packetsReceived ?? 0,
        bytesReceived: s?.bytesReceived ?? 0,
      };
    });
  });
}

/** Dumps what a page knows, for failure messages. */
export async function describePage(page) {
  try {
    const state = await page.evaluate(async () => {
      const c = window.edgeSfu;
      if (!c) return { client: null };
      return {
        state: c.state,
        peerId: c.peerId,
        peers: [...c.peers.values()].map((p) => ({ id: p.id, name: p.name, tracks: [...p.tracks.keys()] })),
        remoteTracks: [...c.remoteTracks.values()].map((t) => `${t.trackId}@${t.mid}/${t.kind}/${t.source}`),
        signalingState: c.pc?.signalingState,
        connectionState: c.pc?.connectionState,
        iceConnectionState: c.pc?.iceConnectionState,
        negotiations: c.negotiations,
        transceivers: c.pc ? c.pc.getTransceivers().map((t) => `${t.mid}:${t.direction}/${t.currentDirection}`) : [],
      };
    });
    return `${JSON.stringify(state)}\n${page.consoleLines.slice(-15).join('\n')}`;
  } catch (err) {
    return `(page not readable: ${err.message})`;
  }
}

/**
 * Asserts that `page` receives live media from each of `peerIds`: video frames decoded and audio packets
 * received, both rising between two samples, and the peer's camera `<video>` showing a picture.
 * @param {import('playwright-core').Page} page
 * @param {number[]} peerIds
 * @param {{audio?: boolean, timeout?: number, label?: string}} [opts]
 */
export async function expectMediaFrom(page, peerIds, { audio = true, timeout = 30_000, label = 'page' } = {}) {
  const pick = (media, id, kind) => media.find((m) => m.peerId === id && m.kind === kind && (kind === 'audio' || m.source === 'camera'));
  try {
    // 1. every expected track is there and has started
    const first = await poll(async () => {
      const media = await remoteMedia(page);
      for (const id of peerIds) {
        const v = pick(media, id, 'video');
        if (!v || v.framesDecoded === 0) return null;
        if (audio) {
          const a = pick(media, id, 'audio');
          if (!a || a.packetsReceived === 0) return null;
        }
      }
      return media;
    }, { timeout, what: `${label}: video frames and audio packets from peers ${peerIds.join(', ')}` });
    // 2. and keeps flowing
    await poll(async () => {
      const media = await remoteMedia(page);
      for (const id of peerIds) {
        if (!(pick(media, id, 'video').framesDecoded > pick(first, id, 'video').framesDecoded)) return null;
        if (audio && !(pick(media, id, 'audio').packetsReceived > pick(first, id, 'audio').packetsReceived)) return null;
      }
      return true;
    }, { timeout: 10_000, what: `${label}: counters rising` });
    // 3. the camera tile of each peer shows a picture
    await poll(() => page.evaluate((ids) => ids.every((id) => {
      const v = document.querySelector(`.tile[data-peer-id="${id}"][data-source="camera"] video`);
      return v && v.videoWidth > 0;
    }), peerIds), { timeout: 10_000, what: `${label}: camera <video> of peers ${peerIds.join(', ')} with videoWidth > 0` });
    // 4. and plays each peer's audio through an <audio> element
    if (audio) {
      await poll(() => page.evaluate((ids) => ids.every((id) => [...document.querySelectorAll(`#audio-sink audio[data-peer-id="${id}"]`)]
        .some((a) => a.srcObject && !a.paused)), peerIds), { timeout: 10_000, what: `${label}: playing <audio> of peers ${peerIds.join(', ')}` });
    }
  } catch (err) {
    err.message += `\n${label} state: ${await describePage(page)}`;
    throw err;
  }
}

/** Room page URL that joins without a click. */
export function roomUrl(base, room, name) {
  const u = new URL('/', base);
  u.searchParams.set('room', room);
  u.searchParams.set('name', name);
  u.searchParams.set('autojoin', '1');
  return u.href;
}

/**
 * The server and the Chromium of one test file: started before its tests, stopped after them.
 * Read `fixture.server` and `fixture.browser` inside tests (they are set once `before` ran).
 * `args` are extra server flags.
 */
export function serverAndBrowser(name, { args = [] } = {}) {
  const fixture = { server: null, browser: null };
  before(async () => {
    if (!chromiumPresent) return;
    fixture.server = await startServer({ name, args });
    fixture.browser = await launchChromium();
  });
  after(async () => {
    await fixture.browser?.close().catch(() => {});
    await fixture.server?.stop();
  });
  return fixture;
}

/** Opens participant `name`'s room page (autojoin) and waits until it joined; returns `{page, id, name}`. */
export async function joinRoom(fixture, room, name) {
  const page = await openPage(fixture.browser, roomUrl(fixture.server.url, room, name), name);
  const id = await waitJoined(page);
  return { page, id, name };
}
