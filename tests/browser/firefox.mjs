// Firefox for the browser tests: Debian's firefox-esr, headless, with fake camera and microphone, driven
// over WebDriver BiDi by puppeteer-core (playwright cannot drive a stock Firefox), and run inside a network namespace:
// Firefox gathers no loopback ICE candidates, and none at all without a default route, so it needs a "LAN".
//
// Firefox's remote agent listens on the namespace's own loopback only (`remote.force-local`), which the test process
// outside cannot reach. A relay started inside the namespace (`node` running RELAY below) takes connections on the
// namespace's veth address and passes them to the agent, and the client names the agent's loopback address as Host.
//
// Firefox's fake devices are a camera and a microphone only: getDisplayMedia captures a real screen, even headless.
// Where Xvfb is installed each Firefox gets its own virtual screen (its X socket is a file, reachable from inside
// the namespace); without it screen sharing fails with NotFoundError.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { after, before } from 'node:test';

import {
  chromiumPresent, describePage, launchChromium, openPage, poll, roomUrl, skipWithoutChromium, spkiHash, startServer,
  watchPage,
} from './harness.mjs';
import { createNamespace, IP, rootAvailable, skipWithoutRoot } from './netns.mjs';

/** The Firefox the tests drive (Debian's package). */
export const FIREFOX = process.env.FIREFOX_BIN || '/usr/bin/firefox-esr';

/** Whether Firefox is installed. */
export const firefoxPresent = fs.existsSync(FIREFOX);

/**
 * Skips the test (loudly) when Firefox is not installed. Returns true when skipped.
 * @param {import('node:test').TestContext} t
 */
export function skipWithoutFirefox(t) {
  if (firefoxPresent) return false;
  const msg = `${FIREFOX} is missing: Firefox browser tests SKIPPED (apt-get install firefox-esr)`;
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
  return true;
}

/** Xvfb, the virtual screen that Firefox's getDisplayMedia captures, or null when it is not installed. */
export const XVFB = ['/usr/bin/Xvfb'].find((p) => fs.existsSync(p)) ?? null;

/** The port of Firefox's remote agent inside its namespace (the namespace is the test's own: any port is free). */
const AGENT_PORT = 9222;

/**
 * Profile preferences: fake media devices (camera, microphone and screen) without permission prompts, autoplay
 * allowed, host candidates with addresses (not mDNS names), and nothing that phones home.
 */
const PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.getdisplaymedia.enabled': true,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'browser.aboutwelcome.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.reportingpolicy.firstRun': false,
  'app.update.disabledForTesting': true,
  'app.normandy.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'extensions.update.enabled': false,
};

/**
 * The relay run inside the namespace: `node -e RELAY <listen address> <port>` forwards every TCP connection on
 * `<listen address>:<port>` to 127.0.0.1:<port>, and prints `relay ready` once listening.
 */
const RELAY = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
net.createServer((client) => {
  const agent = net.connect(Number(port), '127.0.0.1');
  client.pipe(agent).pipe(client);
  const close = () => { client.destroy(); agent.destroy(); };
  client.on('error', close);
  agent.on('error', close);
}).listen(Number(port), host, () => console.log('relay ready'));
`;

/**
 * Resolves with what `proc` printed on `stream` once that matches `re`; rejects when it exits first or after `ms`.
 */
function waitForOutput(proc, stream, re, what, ms = 60_000) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${what}: nothing matching ${re} within ${ms} ms:\n${seen.slice(-2000)}`)), ms);
    proc[stream].on('data', (d) => {
      seen += d.toString();
      if (re.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${code}, signal ${signal}):\n${seen.slice(-2000)}`));
    });
  });
}

/**
 * Starts Xvfb with a 1280x720 screen on a free display (`-displayfd` prints the number it took), not listening on
 * TCP. Resolves with `{display: ':N', stop}`.
 */
async function startScreen() {
  const xvfb = spawn(XVFB, ['-displayfd', '1', '-screen', '0', '1280x720x24', '-nolisten', 'tcp'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const number = /^(\d+)/.exec(await waitForOutput(xvfb, 'stdout', /^\d+\n/, 'Xvfb', 20_000))[1];
  return {
    display: `:${number}`,
    stop: () => { if (xvfb.exitCode === null && xvfb.signalCode === null) xvfb.kill('SIGTERM'); },
  };
}

/**
 * Launches headless Firefox inside namespace `ns` (from netns.mjs `createNamespace`) with a fresh profile and
 * connects puppeteer to it over WebDriver BiDi. Certificates are not checked (edge-sfu's generated one is
 * self-signed). `browser.close()` ends Firefox, the relay and the profile. Firefox's output goes to the file
 * `browser.logFile` (kept, for failure messages).
 * @param {{name: string, nsAddress: string}} ns
 * @param {{prefs?: Record<string, boolean | number | string>}} [options] `prefs`: profile preferences beyond (or
 *   overriding) the usual ones
 * @returns {Promise<import('puppeteer-core').Browser>}
 */
export async function launchFirefoxIn(ns, { prefs = {} } = {}) {
  const puppeteer = (await import('puppeteer-core')).default;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `esfu-firefox-${ns.name}-`));
  fs.writeFileSync(path.join(profile, 'user.js'),
    Object.entries({ ...PREFS, ...prefs }).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join(''));
  const screen = XVFB ? await startScreen() : null;
  const env = screen ? { ...process.env, DISPLAY: screen.display } : process.env;
  const inNs = (argv) => spawn(IP, ['netns', 'exec', ns.name, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const firefox = inNs([FIREFOX, '--headless', '--no-remote', '--profile', profile,
    '--remote-debugging-port', String(AGENT_PORT), 'about:blank']);
  const relay = inNs([process.execPath, '-e', RELAY, ns.nsAddress, String(AGENT_PORT)]);
  const logFile = path.join(os.tmpdir(), `firefox-${process.pid}-${Date.now()}.log`);
  const log = fs.createWriteStream(logFile);
  firefox.stdout.pipe(log, { end: false });
  firefox.stderr.pipe(log, { end: false });
  const stop = () => {
    for (const p of [firefox, relay]) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    screen?.stop();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    await Promise.all([
      waitForOutput(firefox, 'stderr', /WebDriver BiDi listening on ws:\/\//, 'firefox-esr'),
      waitForOutput(relay, 'stdout', /relay ready/, 'the remote agent relay'),
    ]);
    // The first connection may come before the agent accepts sessions.
    const browser = await poll(() => puppeteer.connect({
      browserWSEndpoint: `ws://${ns.nsAddress}:${AGENT_PORT}/session`,
      protocol: 'webDriverBiDi',
      acceptInsecureCerts: true,
      // The agent accepts only a loopback Host (whatever --remote-allow-hosts says): the relay's peer is loopback.
      headers: { Host: `127.0.0.1:${AGENT_PORT}` },
    }), { timeout: 30_000, what: 'a WebDriver BiDi session with Firefox' });
    browser.logFile = logFile;
    /** Whether getDisplayMedia has a screen to capture. */
    browser.hasScreen = screen !== null;
    const close = browser.close.bind(browser);
    browser.close = async () => {
      await close().catch(() => {});
      stop();
    };
    return browser;
  } catch (err) {
    stop();
    throw err;
  }
}

/**
 * Opens `url` in a new tab of Firefox `browser`, collecting console lines like harness.mjs `openPage` does
 * (`page.consoleLines`, and `page.problems` for uncaught exceptions and `edge-sfu error` lines).
 * @param {import('puppeteer-core').Browser} browser
 * @param {string} url
 * @param {string} label prefix for forwarded console lines
 * @param {{preload?: Function}} [options] `preload`: runs in the page before its own scripts
 */
export async function openFirefoxPage(browser, url, label, { preload = null } = {}) {
  const page = await browser.newPage();
  if (preload) await page.evaluateOnNewDocument(preload);
  await page.setViewport({ width: 1280, height: 720 });
  watchPage(page, label);
  await page.goto(url);
  return page;
}

/**
 * The fixture of a test file with Firefox and Chromium in rooms, started before its tests (when Chromium, Firefox and
 * root are there) and stopped after them: network namespace `tag` (`nsIndex`: the third octet of its addresses, one per
 * test file) holding Firefox, edge-sfu listening on the host end of its veth (HTTPS, with the certificate it generates,
 * announcing that address), and Chromium on the host trusting that certificate. Read `server`, `chromium`, `firefox`
 * and `ns` inside tests; `skipped(t)` skips a test (loudly) that cannot run here; `joinFirefox` and `joinChromium` open
 * a participant's room page and wait until it joined, resolving with `{page, id, name}`.
 * @param {string} tag
 * @param {number} nsIndex
 * @param {{firefoxPrefs?: Record<string, boolean | number | string>}} [options] extra Firefox profile preferences
 */
export function firefoxAndChromium(tag, nsIndex, { firefoxPrefs = {} } = {}) {
  const fixture = {
    ns: null, server: null, chromium: null, firefox: null, dataDir: null,
    skipped: (t) => skipWithoutChromium(t) || skipWithoutRoot(t) || skipWithoutFirefox(t),
    async joinFirefox(room, name, options = {}, preload = null) {
      const page = await openFirefoxPage(fixture.firefox, roomUrl(fixture.server.url, room, name, options), `firefox/${name}`,
        { preload });
      return { page, id: await joined(page, name), name };
    },
    async joinChromium(room, name, options = {}) {
      const page = await openPage(fixture.chromium, roomUrl(fixture.server.url, room, name, options), `chromium/${name}`);
      return { page, id: await joined(page, name), name };
    },
  };
  /** Waits until the page's client joined (playwright and puppeteer pages alike); returns its peer id. */
  async function joined(page, label) {
    try {
      return await poll(() => page.evaluate(() => window.edgeSfu?.state === 'joined' && window.edgeSfu.peerId),
        { timeout: 30_000, what: `${label} joined` });
    } catch (err) {
      err.message += `\n${label}: ${await describePage(page)}\nserver log:\n${fixture.server.logTail(40)}\nFirefox log: ${fixture.firefox.logFile}`;
      throw err;
    }
  }
  before(async () => {
    if (!(chromiumPresent && firefoxPresent && rootAvailable)) return;
    fixture.ns = await createNamespace(tag, nsIndex);
    fixture.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `edge-sfu-${tag}-`));
    const certFile = path.join(fixture.dataDir, 'https-certificate.pem');
    // Beyond loopback the server speaks HTTPS, with a certificate it generates into the data directory.
    fixture.server = await startServer({
      name: `edge-sfu-${tag}`,
      baseArgs: ['--listen', `${fixture.ns.hostAddress}:0`, '--workers', '2', '--public-ip', fixture.ns.hostAddress],
      args: ['--data-dir', fixture.dataDir],
      caFile: certFile,
    });
    fixture.chromium = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(fs.readFileSync(certFile, 'utf8'))}`]);
    fixture.firefox = await launchFirefoxIn(fixture.ns, { prefs: firefoxPrefs });
  });
  after(async () => {
    await fixture.firefox?.close();
    await fixture.chromium?.close().catch(() => {});
    await fixture.server?.stop();
    await fixture.ns?.remove();
    if (fixture.dataDir) fs.rmSync(fixture.dataDir, { recursive: true, force: true });
  });
  return fixture;
}
