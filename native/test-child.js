'use strict';
// Helper process for native/*.test.ts, run as another uid (spawn's uid/gid or
// setpriv). Uses the raw binding directly (plain JS: no TypeScript loader in
// the child). Prints one JSON line on stdout.
//
//   node test-child.js BINDING ro-attack LENGTH     fd 3: an O_RDONLY fd of a memfd
//   node test-child.js BINDING peer SOCKET_PATH     connects, sends "hello", waits for stdin EOF
//   node test-child.js BINDING unref SOCKET_PATH    server + client, both unref'd: must exit by itself
//   prlimit --nofile=64 node test-child.js BINDING emfile SOCKET_PATH   accept4 EMFILE -> 'error', then resumes
const fs = require('node:fs');

const [bindingPath, mode, arg] = process.argv.slice(2);
const b = require(bindingPath);

function attempt(fn) {
  try {
    const v = fn();
    return { ok: true, value: v };
  } catch (e) {
    return { ok: false, code: e.code, syscall: e.syscall, message: e.message };
  }
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

if (mode === 'ro-attack') {
  const length = Number(arg);
  const res = { uid: process.getuid(), gid: process.getgid() };
  res.mapWritable = attempt(() => {
    b.Mapping.map(3, length, true, false, 0);
    return 'mapped';
  });
  res.mapReadOnly = attempt(() => {
    const m = b.Mapping.map(3, length, false, false, 0);
    const first = new Uint8Array(m.buffer)[0];
    res.protectReadWrite = attempt(() => m.protect(2));
    m.release();
    return first;
  });
  res.reopenRdwr = attempt(() => fs.openSync('/proc/self/fd/3', 'r+'));
  res.reopenRdonly = attempt(() => fs.openSync('/proc/self/fd/3', 'r'));
  res.fchmod = attempt(() => fs.fchmodSync(3, 0o666));
  res.ftruncate = attempt(() => fs.ftruncateSync(3, 0));
  out(res);
} else if (mode === 'peer') {
  const s = b.SeqpacketSocket.connect(arg, 65536, 8);
  s.start(() => {});
  s.send(Buffer.from('hello'));
  out({ pid: process.pid, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() });
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    s.close();
  });
} else if (mode === 'unref') {
  const srv = b.SeqpacketServer.listen(arg, 16, 65536, 8);
  srv.start(() => {});
  srv.unref();
  const c = b.SeqpacketSocket.connect(arg, 65536, 8);
  c.start(() => {});
  c.unref();
  out({ started: true });
  // Nothing else keeps the loop alive: the process must exit now.
} else if (mode === 'emfile') {
  // Run under a low RLIMIT_NOFILE: fill the fd table with clients so that
  // accept4 fails with EMFILE, then free fds and check the server resumes.
  const errors = [];
  const accepted = [];
  const srv = b.SeqpacketServer.listen(arg, 1024, 65536, 8);
  srv.start((ev, x) => {
    if (ev === 'error') errors.push(x.code);
    else if (ev === 'connection') {
      x.start(() => {});
      accepted.push(x);
    }
  });
  const clients = [];
  for (;;) {
    try {
      clients.push(b.SeqpacketSocket.connect(arg, 65536, 8));
    } catch (e) {
      if (e.code !== 'EMFILE') throw e;
      break;
    }
  }
  setTimeout(() => {
    const errorsWhileFull = errors.length;
    const acceptedWhileFull = accepted.length;
    for (const c of clients.splice(0, clients.length - 2)) c.close();
    for (const s of accepted) s.close();
    setTimeout(() => {
      out({ errorsWhileFull, errors: [...new Set(errors)], acceptedWhileFull, acceptedTotal: accepted.length });
      process.exit(0);
    }, 600);
  }, 300);
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
