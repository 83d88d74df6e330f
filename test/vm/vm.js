'use strict';
// Boot a real Debian kernel under qemu and run a shell script inside it, with
// the host's root filesystem mounted read-only through 9p (chroot /host), so
// the repo, Node and node_modules are all there. One boot per call: callers
// batch everything they need into one script (TCG emulation is slow).
//
//   const { runInVm } = require('./vm');
//   const r = await runInVm({ script: 'step hello echo hi', timeoutSec: 300 });
//   r.ok, r.steps -> [{ name, rc, output }], r.dmesg, r.output, r.timedOut
//
// Inside the script (POSIX sh, cwd = repo root, SHMBROKER_IN_VM=1):
//   step NAME CMD...   runs CMD and reports NAME pass/fail to the host.
// The host filesystem is read-only in the guest; /tmp is a tmpfs.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn, execFileSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..');
const CACHE = path.join(__dirname, '.cache');
const APT_FIX =
  'apt-get install -y qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static cpio kmod';
// Kernel modules the guest needs to mount the host over virtio-9p.
const GUEST_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];

class VmSetupError extends Error {}

function missing(what) {
  return new VmSetupError(`${what}\n  fix: ${APT_FIX}`);
}

function which(cmd) {
  // sbin too: modinfo lives there and is often off a normal user's PATH.
  const dirs = `${process.env.PATH || '/usr/bin:/bin'}:/usr/sbin:/sbin`.split(':');
  for (const dir of dirs) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return null;
}

// The Debian kernel to boot: SHMBROKER_KVER, else the newest one that has an
// image in /boot, modules and a build tree (the module is built against it).
function findKernel(wanted = process.env.SHMBROKER_KVER) {
  let versions = [];
  try {
    versions = fs.readdirSync('/lib/modules');
  } catch {
    /* none */
  }
  const usable = versions
    .filter((v) => !wanted || v === wanted)
    .filter((v) => fs.existsSync(`/boot/vmlinuz-${v}`))
    .filter((v) => fs.existsSync(`/lib/modules/${v}/build/Makefile`))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (!usable.length) {
    throw missing(
      `no kernel with /boot/vmlinuz-<ver>, /lib/modules/<ver> and headers found` +
        (wanted ? ` for SHMBROKER_KVER=${wanted}` : ''),
    );
  }
  const kver = usable[usable.length - 1];
  try {
    fs.accessSync(`/boot/vmlinuz-${kver}`, fs.constants.R_OK);
  } catch {
    throw new VmSetupError(`/boot/vmlinuz-${kver} is not readable by this user: run as root, or chmod a+r it`);
  }
  return { kver, vmlinuz: `/boot/vmlinuz-${kver}`, kdir: `/lib/modules/${kver}/build` };
}

// True when an ELF64 file asks for a dynamic loader (has a PT_INTERP header).
function hasInterpreter(elf) {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3) return true;
  }
  return false;
}

function checkTools() {
  const tools = {};
  for (const t of ['qemu-system-x86_64', 'cpio', 'gzip', 'modinfo']) {
    tools[t] = which(t);
    if (!tools[t]) throw missing(`required tool not found: ${t}`);
  }
  // busybox-static, not a dynamically linked busybox: the initramfs has no libc.
  const bb = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
  if (!bb) throw missing('busybox (static) not found');
  if (hasInterpreter(fs.readFileSync(bb))) throw missing(`${bb} is not statically linked`);
  tools.busybox = bb;
  return tools;
}

// Module names in load order (dependencies first), with their .ko paths.
function moduleClosure(kver, roots, modinfo) {
  const order = [];
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name)) return;
    seen.add(name);
    const deps = execFileSync(modinfo, ['-k', kver, '-F', 'depends', name], { encoding: 'utf8' })
      .trim()
      .split(',')
      .filter(Boolean);
    deps.forEach(visit);
    const file = execFileSync(modinfo, ['-k', kver, '-n', name], { encoding: 'utf8' }).trim();
    // Built into the kernel (virtio_pci on 6.12): nothing to load.
    if (file !== '(builtin)') order.push({ name, file });
  };
  roots.forEach(visit);
  return order;
}

function readModule(file) {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-dc', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], { maxBuffer: 1 << 28 });
  return fs.readFileSync(file);
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
arg() { sed -n "s/.*shmbroker\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
for m in $(cat /modules.order); do
  insmod /lib/modules/$m.ko || echo "@@VM-ERROR insmod $m@@"
done
mkdir -p /host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose host /host; then
  echo "@@VM-ERROR mount 9p@@"; poweroff -f
fi
mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
mount -o rbind /proc /host/proc
mount -o rbind /sys /host/sys
mount -o rbind /dev /host/dev
# The guest gets fresh tmpfs on /tmp and /run; a checkout that lives under
# one of them (a CI clone in /tmp) is bound back in on top, read-only as the rest.
cwd=$(arg cwd)
rebind=""
case "$cwd" in
  /tmp/*|/run/*) mkdir -p /repo && mount -o bind "/host$cwd" /repo && rebind=1 ;;
esac
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run 2>/dev/null
if [ -n "$rebind" ]; then
  mkdir -p "/host$cwd" && mount -o bind /repo "/host$cwd" || echo "@@VM-ERROR rebind $cwd@@"
fi
mkdir -p /host/dev/shm && mount -t tmpfs tmpfs /host/dev/shm
ko=$(arg insmod)
if [ -n "$ko" ]; then
  if insmod "/host$ko" $(arg insmod_args | tr ',' ' '); then
    echo "@@VM-INSMOD ok@@"
  else
    echo "@@VM-INSMOD failed@@"
  fi
fi
echo "@@VM-READY $(cut -d' ' -f1 /proc/uptime)@@"
# The guest keeps its own deadline, so it powers off even if the host runner died.
timeout -s KILL "$(arg deadline)" chroot /host /bin/sh -c "cd '$(arg cwd)' && SHMBROKER_IN_VM=1 HOME=/tmp exec /bin/sh '$(arg script)'"
echo "@@VM-SCRIPT-EXIT rc=$?@@"
echo "@@VM-DMESG-BEGIN@@"
dmesg
echo "@@VM-DMESG-END@@"
echo "@@VM-DONE@@"
poweroff -f
`;

// Builds (or reuses) the initramfs for kver. Cached by content under .cache/.
function buildInitramfs(kver, tools) {
  const mods = moduleClosure(kver, GUEST_MODULES, tools.modinfo);
  const key = crypto
    .createHash('sha256')
    .update(INIT)
    .update(kver)
    .update(tools.busybox)
    .update(String(fs.statSync(tools.busybox).mtimeMs))
    .update(mods.map((m) => `${m.name}:${fs.statSync(m.file).mtimeMs}`).join(','))
    .digest('hex')
    .slice(0, 16);
  const out = path.join(CACHE, `initrd-${kver}-${key}.gz`);
  if (fs.existsSync(out)) return out;

  fs.mkdirSync(CACHE, { recursive: true });
  const root = fs.mkdtempSync(path.join(CACHE, 'initrd-root-'));
  try {
    for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev', 'lib/modules', 'tmp', 'host']) {
      fs.mkdirSync(path.join(root, d), { recursive: true });
    }
    fs.copyFileSync(tools.busybox, path.join(root, 'bin/busybox'));
    fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(root, 'bin/sh'));
    for (const m of mods) fs.writeFileSync(path.join(root, 'lib/modules', `${m.name}.ko`), readModule(m.file));
    fs.writeFileSync(path.join(root, 'modules.order'), mods.map((m) => m.name).join('\n') + '\n');
    fs.writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
    const tmp = `${out}.tmp-${process.pid}`;
    execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${tmp}"`]);
    fs.renameSync(tmp, out);
    // Older builds of it are dead weight (a qemu still using one keeps its inode).
    for (const name of fs.readdirSync(CACHE)) {
      if (name.startsWith(`initrd-${kver}-`) && name.endsWith('.gz') && path.join(CACHE, name) !== out) {
        fs.rmSync(path.join(CACHE, name), { force: true });
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return out;
}

// Run dirs of runners that were killed; a day old is surely not in use.
function removeStaleRuns() {
  for (const name of fs.readdirSync(CACHE)) {
    if (!name.startsWith('run-')) continue;
    const p = path.join(CACHE, name);
    try {
      if (Date.now() - fs.statSync(p).mtimeMs > 86400e3) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      /* raced with its owner */
    }
  }
}

// kmod/shmbroker.ko for insmod: true, (re)built when missing or older than its sources.
function ensureModuleBuilt(kdir) {
  const dir = path.join(REPO, 'kmod');
  const ko = path.join(dir, 'shmbroker.ko');
  const mtime = (p) => (fs.existsSync(p) ? fs.statSync(p).mtimeMs : 0);
  const sources = [path.join(dir, 'shmbroker.c'), path.join(dir, 'Makefile'),
    path.join(dir, 'include/uapi/linux/shmbroker.h')];
  if (mtime(ko) && sources.every((s) => mtime(s) <= mtime(ko))) return ko;
  try {
    execFileSync('make', ['-C', dir, `KDIR=${kdir}`, 'modules'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new VmSetupError(`make -C kmod failed:\n${e.stdout}${e.stderr}`);
  }
  return ko;
}

const STEP_PRELUDE = `
step() {
  __name=$1; shift
  echo "@@STEP-BEGIN $__name@@"
  "$@"
  __rc=$?
  echo "@@STEP-END $__name rc=$__rc@@"
  return $__rc
}
`;

const BAD_DMESG = /(WARNING:|BUG:|BUG |Oops|KASAN|general protection|Kernel panic|kernel BUG|UBSAN|Call Trace|refcount_t:|list_add corruption|list_del corruption|memory corruption|Poison overwritten|INFO: task .* blocked|soft lockup|hard LOCKUP|RCU stall)/;

function parseSteps(output) {
  const steps = [];
  let cur = null;
  for (const line of output.split(/\r?\n/)) {
    const b = line.match(/@@STEP-BEGIN (.+)@@/);
    if (b) {
      cur = { name: b[1], rc: null, output: [] };
      steps.push(cur);
      continue;
    }
    const e = line.match(/@@STEP-END (.+) rc=(\d+)@@/);
    if (e) {
      const s = [...steps].reverse().find((x) => x.name === e[1] && x.rc === null);
      if (s) s.rc = Number(e[2]);
      cur = null;
      continue;
    }
    if (cur) cur.output.push(line);
  }
  for (const s of steps) s.output = s.output.join('\n');
  return steps;
}

/**
 * Boots the VM once and runs `script` (sh) in the chroot.
 * @param {object} o
 * @param {string} o.script          shell script text; `step NAME CMD...` reports steps
 * @param {number} [o.timeoutSec]    whole-boot timeout (default 1200)
 * @param {string} [o.kver]          kernel to boot (default SHMBROKER_KVER, else the newest)
 * @param {boolean|string} [o.insmod] true: load kmod/shmbroker.ko; a string: that .ko
 * @param {string[]} [o.insmodArgs]  module parameters, e.g. ['max_regions=64']
 * @param {string[]} [o.cmdline]    extra kernel parameters, e.g. ['slub_debug=FZPU']
 * @param {number} [o.memMB], [o.smp]
 * @param {(chunk:string)=>void} [o.onOutput] console output as it arrives
 */
async function runInVm(o) {
  const tools = checkTools();
  const { kver, vmlinuz, kdir } = findKernel(o.kver);
  const initrd = buildInitramfs(kver, tools);
  const timeoutSec = o.timeoutSec ?? Number(process.env.SHMBROKER_VM_TIMEOUT || 1200);

  // The guest reads the script through 9p, and the guest's /tmp is a fresh
  // tmpfs, so it lives in the repo's cache dir rather than the host's /tmp.
  fs.mkdirSync(CACHE, { recursive: true });
  removeStaleRuns();
  const runDir = fs.mkdtempSync(path.join(CACHE, 'run-'));
  const scriptPath = path.join(runDir, 'script.sh');
  fs.writeFileSync(scriptPath, `${STEP_PRELUDE}\n${o.script}\n`);

  let ko = '';
  if (o.insmod) {
    ko = typeof o.insmod === 'string' ? path.resolve(o.insmod) : ensureModuleBuilt(kdir);
    if (!fs.existsSync(ko)) throw new VmSetupError(`module not built: ${ko}`);
  }
  for (const p of [scriptPath, ko, REPO]) {
    if (/\s/.test(p)) throw new VmSetupError(`path with whitespace cannot be passed to the guest: ${p}`);
  }
  const append = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    `shmbroker.script=${scriptPath}`,
    `shmbroker.cwd=${o.cwd ?? REPO}`,
    `shmbroker.deadline=${Math.max(1, Math.ceil(timeoutSec))}`,
  ];
  if (ko) append.push(`shmbroker.insmod=${ko}`);
  if (o.insmodArgs?.length) append.push(`shmbroker.insmod_args=${o.insmodArgs.join(',')}`);
  if (o.cmdline?.length) append.push(...o.cmdline);

  const args = [
    '-accel', 'tcg,thread=multi',
    '-cpu', 'max',
    '-m', String(o.memMB ?? 2048),
    '-smp', String(o.smp ?? 2),
    '-nographic', '-no-reboot',
    '-kernel', vmlinuz,
    '-initrd', initrd,
    '-append', append.join(' '),
    '-virtfs', 'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
  ];

  const started = Date.now();
  let output = '';
  let readyAt = null;
  let timedOut = false;
  const qemu = spawn(tools['qemu-system-x86_64'], args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Never leave a guest running behind a runner that is going away.
  const killQemu = () => qemu.exitCode === null && qemu.kill('SIGKILL');
  const onSignal = (sig) => {
    killQemu();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.kill(process.pid, sig);
  };
  process.on('exit', killQemu);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onData = (buf) => {
    const s = buf.toString('utf8');
    output += s;
    if (readyAt === null && output.includes('@@VM-READY')) readyAt = Date.now();
    if (o.onOutput) o.onOutput(s);
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.kill('SIGKILL');
  }, timeoutSec * 1000);
  const exitCode = await new Promise((resolve) => qemu.on('close', (code) => resolve(code)));
  clearTimeout(timer);
  process.removeListener('exit', killQemu);
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  fs.rmSync(runDir, { recursive: true, force: true });

  output = output.replace(/\r/g, '');
  const dm = output.match(/@@VM-DMESG-BEGIN@@\n([\s\S]*?)@@VM-DMESG-END@@/);
  const dmesg = dm ? dm[1] : null;
  // Without the final dump, judge whatever the console printed.
  const dmesgBad = (dmesg ?? output).split('\n').filter((l) => BAD_DMESG.test(l));
  const scriptExit = output.match(/@@VM-SCRIPT-EXIT rc=(\d+)@@/);
  const done = output.includes('@@VM-DONE@@');
  const insmodOk = ko ? output.includes('@@VM-INSMOD ok@@') : true;
  const vmErrors = [...output.matchAll(/@@VM-ERROR (.+)@@/g)].map((m) => m[1]);
  return {
    ok: done && !timedOut && insmodOk && !vmErrors.length && dmesgBad.length === 0,
    kver,
    exitCode,
    timedOut,
    done,
    insmodOk,
    vmErrors,
    scriptRc: scriptExit ? Number(scriptExit[1]) : null,
    steps: parseSteps(output),
    dmesg,
    dmesgBad,
    output,
    bootMs: readyAt === null ? null : readyAt - started,
    durationMs: Date.now() - started,
  };
}

module.exports = { runInVm, findKernel, checkTools, buildInitramfs, VmSetupError, REPO, APT_FIX };
