// The layers stay layers: clients never import the broker, the shared wire
// vocabulary imports neither side. Checked on the source, by resolving every
// relative import and require of every file (issue 14; docs/ARCHITECTURE.md).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '..');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(REPO, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'generated') out.push(...sourceFiles(rel));
    } else if (/\.(ts|js|mjs|cjs)$/.test(e.name)) out.push(rel);
  }
  return out;
}

/** Every module a file names, resolved to a repository path ('' for packages). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(REPO, file), 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s+|\brequire\(\s*|\bimport\(\s*)(['"`])([^'"`]+)\1/g)].map((m) => m[2]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => path.normalize(path.join(path.dirname(file), s)));
}

function violations(dirs: string[], forbidden: string[]): string[] {
  const out: string[] = [];
  for (const file of dirs.flatMap(sourceFiles)) {
    for (const target of importsOf(file)) {
      if (forbidden.some((f) => target === f || target.startsWith(`${f}/`))) out.push(`${file} -> ${target}`);
    }
  }
  return out;
}

describe('layering', () => {
  it('finds the imports it is looking for (the scan itself works)', () => {
    // The broker does import its layers; a scan that saw nothing would pass anything.
    expect(violations(['service'], ['service/store']).length).toBeGreaterThan(0);
    expect(importsOf('clients/cli/main.ts')).toContain(path.normalize('clients/sdk/errors'));
  });

  it('nothing under clients/ imports service/', () => {
    expect(violations(['clients'], ['service'])).toEqual([]);
  });

  it('the wire vocabulary (proto/wire) imports neither the broker nor the clients', () => {
    expect(violations(['proto/wire'], ['service', 'clients', 'native'])).toEqual([]);
  });

  it('`shmbroker serve` reaches the broker only through its entry point service/index.ts', () => {
    const serve = fs.readFileSync(path.join(REPO, 'clients/cli/serve-command.ts'), 'utf8');
    expect(serve).toMatch(/path\.join\(__dirname, '\.\.', '\.\.', 'service', 'index'\)/);
    expect(fs.existsSync(path.join(REPO, 'service/index.ts'))).toBe(true);
  });
});
