#!/usr/bin/env node
// Builds the FileDescriptorSet of the shmbroker protos with buf (pinned in
// devDependencies), imports included, source info (comments) kept:
// dist/protoset/descriptor-set.binpb. Server reflection serves exactly these
// files (their real paths, dependencies, snake_case names and json_name), so
// grpcurl-style clients can resolve and call the API.
//
// The Google API protos the shmbroker protos import (google/api/*,
// google/rpc/*) come from the google-proto-files package (a devDependency)
// and are copied into dist/protoset/deps at build time, never committed; buf.yaml
// lists that directory as a second module of the workspace, which lint skips.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const outDir = path.join(root, 'dist', 'protoset');
const depsDir = path.join(outDir, 'deps');

const pkg = (name) => path.dirname(require.resolve(`${name}/package.json`));
/**
 * Third-party protos: [path in the descriptor set, package it comes from, path
 * there]. The Google API ones are imported by the shmbroker protos; health and
 * reflection are the other services the control socket serves, so reflection
 * describes them too.
 */
const DEPS = [
  ['google/api/field_behavior.proto', 'google-proto-files'],
  ['google/api/resource.proto', 'google-proto-files'],
  ['google/rpc/code.proto', 'google-proto-files'],
  ['google/rpc/status.proto', 'google-proto-files'],
  ['google/rpc/error_details.proto', 'google-proto-files'],
  ['grpc/health/v1/health.proto', 'grpc-health-check', 'proto/health/v1/health.proto'],
  ['grpc/reflection/v1/reflection.proto', '@grpc/reflection', 'build/proto/grpc/reflection/v1/reflection.proto'],
  ['grpc/reflection/v1alpha/reflection.proto', '@grpc/reflection', 'build/proto/grpc/reflection/v1alpha/reflection.proto'],
];

fs.rmSync(depsDir, { recursive: true, force: true });
for (const [rel, from, inPackage] of DEPS) {
  fs.mkdirSync(path.dirname(path.join(depsDir, rel)), { recursive: true });
  fs.copyFileSync(path.join(pkg(from), inPackage ?? rel), path.join(depsDir, rel));
}

const out = path.join(outDir, 'descriptor-set.binpb');
const buf = require.resolve('@bufbuild/buf/bin/buf');
execFileSync(buf, ['build', '--as-file-descriptor-set', '-o', out], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
