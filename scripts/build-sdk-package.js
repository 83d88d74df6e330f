#!/usr/bin/env node
// Assembles the client SDK package, packages/sdk (@shmbroker/sdk), from the
// repository: run by its `prepack` (so `npm pack -w @shmbroker/sdk` always
// packs a fresh build) and by the tests that check it. Needs `npm run build`
// first (the descriptor set and the generated types).
//
// What goes in, and why (the package's `files` list is the filter; nothing
// here is committed, see .gitignore):
// - dist/: the SDK entry (clients/sdk/index.ts) and everything it imports,
//   compiled with declarations by packages/sdk/tsconfig.json. The repository
//   layout is kept, so proto/load.ts and native/index.ts find their files
//   the same way in the package and in the repository.
// - proto/shmbroker/v1/*.proto and dist/protoset (descriptor set, google/api
//   and google/rpc protos): the SDK loads the protos at run time
//   (proto/load.ts) and decodes google.rpc.Status with the descriptor set.
// - prebuilds/linux-<arch>/: the addon, built here with prebuildify as a
//   Node-API binary (one file for every Node version), found at run time by
//   node-gyp-build. An install whose scripts are not approved (npm 11) uses it.
// - binding.gyp, native/src, kmod/include/uapi: the addon's sources, so an
//   install on a platform without a matching prebuilt binary builds it (npm
//   runs `node-gyp rebuild` for a package with a binding.gyp, once its install
//   script is approved).
//
// `--types-only` compiles dist/ and stops (the API report needs only the
// declarations); `--clean` removes everything staged (the package's
// `postpack`: a staged binding.gyp left in the workspace would make npm build
// the addon there at the next `npm install`, and change package-lock.json).
// Child output goes to stderr: `npm pack --json` prints its report on stdout.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const pkg = path.join(root, 'packages', 'sdk');
const typesOnly = process.argv.includes('--types-only');
const clean = process.argv.includes('--clean');

// Staged outputs only: package.json, README.md, tsconfig.json,
// api-extractor.json and the API report (etc/) are the package's committed files.
const STAGED = ['dist', 'proto', 'native', 'kmod', 'binding.gyp', 'build', 'prebuilds'];
for (const p of STAGED) fs.rmSync(path.join(pkg, p), { recursive: true, force: true });
if (clean) process.exit(0);

for (const need of ['dist/protoset/descriptor-set.binpb', 'proto/generated/control-methods.ts']) {
  if (!fs.existsSync(path.join(root, need))) throw new Error(`build-sdk-package: ${need} is missing; run \`npm run build\` at the repository root first`);
}

execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(pkg, 'tsconfig.json')], { cwd: root, stdio: ['ignore', 2, 2] });
if (typesOnly) process.exit(0);

const copy = (from, to = from) => fs.cpSync(path.join(root, from), path.join(pkg, to), { recursive: true });
copy('proto/shmbroker');
copy('dist/protoset/descriptor-set.binpb');
copy('dist/protoset/deps/google');
copy('binding.gyp');
copy('kmod/include/uapi');
fs.mkdirSync(path.join(pkg, 'native', 'src'), { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'native', 'src'))) {
  if (/\.(cc|h)$/.test(f)) copy(`native/src/${f}`);
}

// --napi: a Node-API binary (binding.gyp pins NAPI_VERSION 8), so the one
// file loads on every Node the package's engines allow; compiled against
// this Node's headers (the ones the repository's own addon build uses:
// prebuildify's default target would fetch the newest Node's from
// nodejs.org). --tag-libc: a musl system does not take the glibc binary and
// builds from source instead. --strip: no debug symbols in the package.
execFileSync(
  process.execPath,
  [require.resolve('prebuildify/bin.js'), '--napi', '--tag-libc', '--strip', '--target', `node@${process.versions.node}`],
  { cwd: pkg, stdio: ['ignore', 2, 2] },
);
// prebuildify compiles in build/; the package loads prebuilds/ (a stale
// build/Release would win over it in node-gyp-build's search).
fs.rmSync(path.join(pkg, 'build'), { recursive: true, force: true });
