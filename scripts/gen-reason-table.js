#!/usr/bin/env node
// Rewrites the two reason tables of docs/ARCHITECTURE.md from the registry
// (proto/wire/reasons.ts, compiled: run `npm run build` first). The tables
// are checked against the registry by proto/wire/reasons-doc.test.ts.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { REASONS, EVENT_REASONS } = require(path.join(root, 'dist', 'proto', 'wire', 'reasons.js'));
const doc = path.join(root, 'docs', 'ARCHITECTURE.md');
const esc = (t) => String(t).replace(/\|/g, '\\|');

function replace(text, name, header, rows) {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${doc}: markers ${begin} ... ${end} not found`);
  return `${text.slice(0, a + begin.length)}\n${header}\n${rows.join('\n')}\n${text.slice(b)}`;
}

let text = fs.readFileSync(doc, 'utf8');
text = replace(
  text,
  'reasons',
  '| reason | code | raised by | message |\n|---|---|---|---|',
  Object.entries(REASONS).map(([r, i]) => `| \`${r}\` | ${i.code} | ${i.origin} | ${esc(i.message)} |`),
);
text = replace(text, 'event-reasons', '| reason | meaning |\n|---|---|', Object.entries(EVENT_REASONS).map(([r, t]) => `| \`${r}\` | ${esc(t)} |`));
fs.writeFileSync(doc, text);
