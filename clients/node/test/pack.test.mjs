// `npm pack` gives a clean tarball: the built code, its types, the schemas
// and the README, nothing else; and what it holds works on its own.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');

test('npm pack holds dist, types, schemas and the README only; the unpacked package validates', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-client-pack-'));
  try {
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: pkg, encoding: 'utf8' }));
    const files = packed.files.map((f) => f.path).sort();
    const unexpected = files.filter((f) => !/^(dist\/[a-z]+\.(js|d\.ts)|schemas\/[a-z]+\.schema\.json|package\.json|README\.md)$/.test(f));
    assert.deepEqual(unexpected, []);
    for (const f of ['README.md', 'dist/index.js', 'dist/index.d.ts', 'schemas/envelope.schema.json', 'schemas/campaign.schema.json']) {
      assert.ok(files.includes(f), `${f} is missing from the tarball`);
    }
    assert.equal(packed.name, '@herald/client');

    execFileSync('tar', ['-xzf', join(dir, packed.filename), '-C', dir]);
    // Its dependencies as npm would install them (the same versions).
    symlinkSync(join(pkg, 'node_modules'), join(dir, 'package', 'node_modules'));
    const unpacked = await import(pathToFileURL(join(dir, 'package', 'dist', 'index.js')).href);
    assert.throws(() => unpacked.Message.toast('x').validate(), (e) => e.field === 'to');
    unpacked.Message.toast('x').toAll().validate();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
