// A hostile local user's fake broker (run as that uid): listens on
// DIR/data.sock (SOCK_SEQPACKET) and DIR/broker.sock (stream), creating DIR
// if needed, and reports on stdout, one JSON line each, every connection and
// every byte a client sends it. Anything sent is what the attack gets; a
// client that authenticates the broker first sends nothing.
// Usage: node fake-broker.js DIR REPO
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const [dir, repo] = process.argv.slice(2);
const native = require(path.join(repo, 'dist', 'native'));

fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const dataPath = path.join(dir, 'data.sock');
const data = native.SeqpacketServer.listen(dataPath);
fs.chmodSync(dataPath, 0o666);
data.on('connection', (sock) => {
  say({ conn: 'data' });
  sock.on('message', (buf, fds) => {
    say({ bytes: 'data', n: buf.length });
    for (const fd of fds) native.closeFd(fd);
  });
  sock.on('error', () => undefined);
});

const ctlPath = path.join(dir, 'broker.sock');
const ctl = net.createServer((sock) => {
  say({ conn: 'control' });
  sock.on('data', (buf) => say({ bytes: 'control', n: buf.length }));
  sock.on('error', () => undefined);
});
ctl.listen(ctlPath, () => {
  fs.chmodSync(ctlPath, 0o666);
  say({ ready: true, uid: process.getuid() });
});
process.on('SIGTERM', () => process.exit(0));
