'use strict';
// Shared by the plain-JS suites that run inside the test VM: TAP-style
// result lines and a child-process runner (optionally as another uid).
const { spawn } = require('node:child_process');

/**
 * TAP lines "ok N - name" / "not ok N - name # detail". With detailAlways the
 * detail is printed on passing lines too (figures worth keeping in the log).
 */
function createTap({ detailAlways = false } = {}) {
  let passed = 0;
  let failed = 0;
  let n = 0;
  function ok(cond, name, detail) {
    n++;
    if (cond) passed++;
    else failed++;
    const show = detail !== undefined && (detailAlways || !cond);
    const text = show ? ` # ${String(typeof detail === 'string' ? detail : JSON.stringify(detail)).split('\n').join(' | ').slice(0, 1500)}` : '';
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}${text}`);
    return cond;
  }
  /** Prints "P passed, F failed" and exits 0 only if nothing failed. */
  function finish() {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  }
  return { ok, finish };
}

/** Runs argv to completion; { uid, gid } drops privileges with setpriv, input goes to stdin. */
function run(argv, o = {}) {
  return new Promise((resolve) => {
    if (o.uid !== undefined) argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups', '--', ...argv];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on('error', () => {});
    child.stdin.end(o.input || '');
  });
}

module.exports = { createTap, run };
