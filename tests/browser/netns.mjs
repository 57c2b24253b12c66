// Network namespaces for browser tests that need a second machine: a namespace joined to the root
// namespace by a veth pair stands in for a phone or laptop on the LAN, and Chromium can run inside it.
//
// Only the private range 10.77.<index>.0/24 is used, on interfaces this module creates; no other
// interface, address or route is touched. Needs root and iproute2's `ip`.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS } from './harness.mjs';

/** Where `ip` is (on PATH or in an sbin directory that a non-login PATH may lack), or null. */
export const IP = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/sbin']
  .map((dir) => path.join(dir, 'ip'))
  .find((p) => fs.existsSync(p)) ?? null;

/** Whether namespace tests can run: running as root and `ip` exists. */
export const rootAvailable = typeof process.getuid === 'function' && process.getuid() === 0 && IP !== null;

/**
 * Skips the test (loudly) when not root or without `ip`. Returns true when skipped.
 * @param {import('node:test').TestContext} t
 */
export function skipWithoutRoot(t) {
  if (rootAvailable) return false;
  const why = IP === null ? '`ip` (iproute2) is missing' : 'not running as root';
  const msg = `${why}: network-namespace browser tests SKIPPED (run as root with iproute2 installed)`;
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
  return true;
}

/**
 * Runs a command; resolves with its exit code and output (never rejects on a non-zero exit).
 * @param {string} file
 * @param {string[]} args
 * @returns {Promise<{code: number, stdout: string, stderr: string}>}
 */
function run(file, args) {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && typeof err.code !== 'number' ? err.message : '') });
    });
  });
}

/** Runs `ip ...args`, throwing with its stderr when it fails. */
async function ip(...args) {
  const r = await run(IP, args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Creates network namespace `esfu-<tag>-<pid>` and a veth pair: the host end in the root namespace with
 * 10.77.<index>.1/24, the other end inside with 10.77.<index>.2/24, both up, `lo` up inside, and a default route
 * inside via 10.77.<index>.1. `remove()` deletes the namespace and the veth (idempotent; call it in `after`).
 * @param {string} tag short name of the test (letters, digits, dashes)
 * @param {number} index 0..255, the third octet; one per namespace alive at a time
 * @returns {Promise<{name: string, hostIf: string, nsIf: string, hostAddress: string, nsAddress: string,
 *   exec: (argv: string[]) => Promise<{code: number, stdout: string, stderr: string}>, remove: () => Promise<void>}>}
 */
export async function createNamespace(tag, index) {
  if (!rootAvailable) throw new Error('createNamespace needs root and `ip`');
  if (!/^[a-z0-9-]+$/i.test(tag)) throw new Error(`namespace tag ${JSON.stringify(tag)}: letters, digits and dashes only`);
  if (!Number.isInteger(index) || index < 0 || index > 255) throw new Error(`namespace index ${index}: 0..255`);
  const name = `esfu-${tag}-${process.pid}`;
  // Interface names have at most 15 characters: "ve" + index (<= 3) + "h"/"n" + pid (<= 7).
  const hostIf = `ve${index}h${process.pid}`;
  const nsIf = `ve${index}n${process.pid}`;
  const hostAddress = `10.77.${index}.1`;
  const nsAddress = `10.77.${index}.2`;
  // Refuse rather than disturb: the subnet must be free in the root namespace.
  const taken = (await ip('-4', '-o', 'addr', 'show', 'to', `10.77.${index}.0/24`)).trim();
  if (taken) throw new Error(`10.77.${index}.0/24 is already in use (a leftover of another run?):\n${taken}`);

  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    // Deleting the namespace destroys the inner veth end, and with it the host end; the second command only
    // matters when creation stopped half-way.
    await run(IP, ['netns', 'del', name]);
    await run(IP, ['link', 'del', hostIf]);
  };
  try {
    await ip('netns', 'add', name);
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
    // No IPv6 link-local addresses on the pair: they appear only after duplicate address detection, a second or
    // two after the link comes up, and Chromium aborts page loads with ERR_NETWORK_CHANGED when they do. Best effort:
    // without IPv6 in the kernel there is nothing to turn off.
    await run(IP, ['link', 'set', 'dev', hostIf, 'addrgenmode', 'none']);
    await run(IP, ['-n', name, 'link', 'set', 'dev', nsIf, 'addrgenmode', 'none']);
    await ip('addr', 'add', `${hostAddress}/24`, 'dev', hostIf);
    await ip('link', 'set', hostIf, 'up');
    await ip('-n', name, 'addr', 'add', `${nsAddress}/24`, 'dev', nsIf);
    await ip('-n', name, 'link', 'set', nsIf, 'up');
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    await ip('-n', name, 'route', 'add', 'default', 'via', hostAddress);
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    name,
    hostIf,
    nsIf,
    hostAddress,
    nsAddress,
    exec: (argv) => run(IP, ['netns', 'exec', name, ...argv]),
    remove,
  };
}

/**
 * Launches headless Chromium (the harness's flags plus `extraArgs`) whose process runs inside namespace `ns`: its
 * network is the namespace's, so it reaches the host only through the veth.
 * @param {{name: string}} ns from createNamespace
 * @param {string[]} [extraArgs]
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launchChromiumIn(ns, extraArgs = []) {
  const { chromium } = await import('playwright-core');
  // playwright starts `executablePath` with its own arguments: a wrapper moves that process into the namespace.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `esfu-chromium-${ns.name}-`));
  const wrapper = path.join(dir, 'chromium-in-netns');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${shellQuote(IP)} netns exec ${shellQuote(ns.name)} ${shellQuote(CHROMIUM)} "$@"\n`, { mode: 0o755 });
  try {
    const browser = await chromium.launch({
      executablePath: wrapper,
      args: [...CHROMIUM_ARGS, ...extraArgs],
      // playwright's own --headless would clash with --headless=new.
      ignoreDefaultArgs: ['--headless'],
      timeout: 60_000,
    });
    browser.on('disconnected', () => fs.rmSync(dir, { recursive: true, force: true }));
    return browser;
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/**
 * Like createNamespace, with IPv6 only: namespace `esfu-<tag>-<pid>` reaches the root namespace over a veth pair
 * whose host end has fd77:<index>::1/64 and whose inner end has fd77:<index>::2/64 (unique local addresses, no
 * duplicate address detection, no link-local addresses: see createNamespace), a default route via the host end,
 * and static neighbour entries both ways (no neighbour discovery to wait for). Inside, `lo` keeps only ::1: the
 * namespace has no IPv4 address at all. `remove()` as createNamespace's.
 * @param {string} tag short name of the test (letters, digits, dashes)
 * @param {number} index 0..65535, the second group of the prefix; one per namespace alive at a time
 * @returns {Promise<{name: string, hostIf: string, nsIf: string, hostAddress: string, nsAddress: string,
 *   exec: (argv: string[]) => Promise<{code: number, stdout: string, stderr: string}>, remove: () => Promise<void>}>}
 */
export async function createNamespace6(tag, index) {
  if (!rootAvailable) throw new Error('createNamespace6 needs root and `ip`');
  if (!/^[a-z0-9-]+$/i.test(tag)) throw new Error(`namespace tag ${JSON.stringify(tag)}: letters, digits and dashes only`);
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) throw new Error(`namespace index ${index}: 0..65535`);
  const prefix = `fd77:${index.toString(16)}::`;
  const name = `esfu-${tag}-${process.pid}`;
  const hostIf = `v6${index % 1000}h${process.pid}`.slice(0, 15);
  const nsIf = `v6${index % 1000}n${process.pid}`.slice(0, 15);
  const hostAddress = `${prefix}1`;
  const nsAddress = `${prefix}2`;
  const taken = (await ip('-6', '-o', 'addr', 'show', 'to', `${prefix}/64`)).trim();
  if (taken) throw new Error(`${prefix}/64 is already in use (a leftover of another run?):\n${taken}`);

  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    await run(IP, ['netns', 'del', name]);
    await run(IP, ['link', 'del', hostIf]);
  };
  const inside = (...args) => run(IP, ['netns', 'exec', name, ...args]);
  try {
    await ip('netns', 'add', name);
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
    // As `sysctl net.ipv6.conf.{all,default}.disable_ipv6=0` inside, without needing procps.
    const enable = await inside('sh', '-c', 'for c in all default; do echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done');
    if (enable.code !== 0) throw new Error(`enabling IPv6 in the namespace failed: ${enable.stderr.trim()}`);
    // The host end only: IPv6 on for this interface, whatever the host's default.
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, '0');
    await ip('link', 'set', 'dev', hostIf, 'addrgenmode', 'none');
    await ip('-n', name, 'link', 'set', 'dev', nsIf, 'addrgenmode', 'none');
    await ip('link', 'set', hostIf, 'up');
    await ip('-n', name, 'link', 'set', nsIf, 'up');
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    await ip('-n', name, 'addr', 'del', '127.0.0.1/8', 'dev', 'lo');
    await ip('addr', 'add', `${hostAddress}/64`, 'dev', hostIf, 'nodad');
    await ip('-n', name, 'addr', 'add', `${nsAddress}/64`, 'dev', nsIf, 'nodad');
    await ip('-n', name, '-6', 'route', 'add', 'default', 'via', hostAddress);
    const macOf = async (args) => {
      const out = await ip(...args);
      const m = out.match(/link\/ether ([0-9a-f:]{17})/);
      if (!m) throw new Error(`no MAC address in: ${out}`);
      return m[1];
    };
    const hostEther = await macOf(['link', 'show', 'dev', hostIf]);
    const nsEther = await macOf(['-n', name, 'link', 'show', 'dev', nsIf]);
    await ip('-6', 'neigh', 'replace', nsAddress, 'lladdr', nsEther, 'dev', hostIf, 'nud', 'permanent');
    await ip('-n', name, '-6', 'neigh', 'replace', hostAddress, 'lladdr', hostEther, 'dev', nsIf, 'nud', 'permanent');
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    name,
    hostIf,
    nsIf,
    hostAddress,
    nsAddress,
    exec: (argv) => run(IP, ['netns', 'exec', name, ...argv]),
    remove,
  };
}
