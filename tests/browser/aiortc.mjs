// Running the aiortc scripts (an independent WebRTC stack: ../whip/*.py, ../aiortc/*.py) from browser tests.
// scripts/test installs aiortc into target/aiortc-venv; AIORTC_PYTHON names another interpreter that has it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { poll } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The Python that has aiortc. */
export const PYTHON = process.env.AIORTC_PYTHON || path.resolve(here, '../../target/aiortc-venv/bin/python3');

/** Skips the test (loudly) when the Python with aiortc is missing. Returns true when skipped. */
export function skipWithoutAiortc(t) {
  if (fs.existsSync(PYTHON)) return false;
  const msg = `${PYTHON} is missing: aiortc tests SKIPPED (scripts/test installs it; or set AIORTC_PYTHON)`;
  console.error(`\n${'!'.repeat(msg.length + 8)}\n!!! ${msg} !!!\n${'!'.repeat(msg.length + 8)}\n`);
  t.skip(msg);
  return true;
}

/**
 * Runs an aiortc script, `script` relative to tests/ (`whip/whep_view.py`); its output lines are collected
 * (`lines`), `waitFor(re)` waits for one that matches, `exited` resolves to its exit code. With `stdin`, its
 * standard input is a pipe (`proc.stdin`; the member script leaves when it closes).
 */
export function runScript(script, args, { stdin = false } = {}) {
  const proc = spawn(PYTHON, [path.resolve(here, '..', script), ...args], { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const lines = [];
  const collect = (chunk) => lines.push(...String(chunk).split('\n').filter(Boolean));
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  const name = path.basename(script);
  const waitFor = (re, what, timeout = 30_000) => poll(() => lines.find((l) => re.test(l)), { timeout, what: `${name}: ${what}` })
    .catch((err) => {
      err.message += `\n${name} output:\n${lines.join('\n')}`;
      throw err;
    });
  return { proc, lines, exited, waitFor };
}
