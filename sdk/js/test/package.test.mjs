// The packages as an app team installs them: versions, what npm pack ships,
// the entry points, and the size budget (minified with esbuild, gzipped).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { test } from 'node:test';
import { build } from 'esbuild';
import { REPO } from '../test-helpers/herald-node.mjs';

const JS = join(REPO, 'sdk/js');
const REACT = join(REPO, 'sdk/react');
const json = (p) => JSON.parse(readFileSync(p, 'utf8'));
const cargoVersion = () => /^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m.exec(readFileSync(join(REPO, 'Cargo.toml'), 'utf8'))[1];

test("the packages' versions are Herald's (Cargo.toml)", () => {
  const v = cargoVersion();
  assert.equal(json(join(JS, 'package.json')).version, v);
  const react = json(join(REACT, 'package.json'));
  assert.equal(react.version, v);
  assert.equal(react.dependencies['@herald/sdk'], v, '@herald/react depends on the @herald/sdk of the same release');
});

test('package.json: exports with types, files, sideEffects, engines; every file it names exists', () => {
  for (const dir of [JS, REACT]) {
    const pkg = json(join(dir, 'package.json'));
    assert.equal(pkg.type, 'module');
    assert.equal(pkg.sideEffects, false);
    assert.match(pkg.engines.node, />=\s*20/);
    assert.ok(existsSync(join(dir, pkg.types)), `${pkg.name}: ${pkg.types}`);
    for (const [key, entry] of Object.entries(pkg.exports)) {
      if (typeof entry === 'string') continue;
      assert.ok(existsSync(join(dir, entry.types)), `${pkg.name} ${key}: ${entry.types}`);
      assert.ok(existsSync(join(dir, entry.default)), `${pkg.name} ${key}: ${entry.default}`);
      assert.ok(pkg.files.includes(entry.default.slice(2)) && pkg.files.includes(entry.types.slice(2)), `${key} is in files`);
    }
  }
});

test('npm pack ships the modules, their types and the README, nothing else', () => {
  const packed = (dir) => JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' }))[0];
  const sdk = packed(JS);
  assert.equal(sdk.name, '@herald/sdk');
  assert.deepEqual(sdk.files.map((f) => f.path).sort(), [
    'README.md',
    'herald-core.d.ts',
    'herald-core.js',
    'herald-render.d.ts',
    'herald-render.js',
    'herald.d.ts',
    'herald.js',
    'package.json',
  ]);
  const react = packed(REACT);
  assert.equal(react.name, '@herald/react');
  assert.deepEqual(react.files.map((f) => f.path).sort(), ['README.md', 'index.d.ts', 'index.js', 'package.json']);
});

test('the entry points import in Node: the core without a DOM, the full build too', async () => {
  const core = await import('@herald/sdk/core');
  const full = await import('@herald/sdk');
  const render = await import('@herald/sdk/render');
  assert.equal(typeof core.Herald.connect, 'function');
  assert.equal(typeof full.Herald.connect, 'function');
  assert.equal(typeof full.renderPreview, 'function');
  assert.equal(full.renderPreview, render.renderPreview);
  assert.equal(full.HeraldClient, core.HeraldClient, 'one client class, shared');
  assert.equal(typeof core.renderPreview, 'undefined', 'the core has no renderer');
});

const KB = 1024;
async function minGz(entry) {
  const out = await build({ entryPoints: [join(JS, entry)], bundle: true, minify: true, format: 'esm', write: false, logLevel: 'silent' });
  const bytes = out.outputFiles[0].contents;
  return { min: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
}

test('size budget: core <= 8 KB, core + renderer <= 20 KB, minified and gzipped', async () => {
  const core = await minGz('herald-core.js');
  const full = await minGz('herald.js');
  console.log(`# core ${core.min} B min, ${core.gz} B min+gz; core+renderer ${full.min} B min, ${full.gz} B min+gz`);
  assert.ok(core.gz <= 8 * KB, `core is ${core.gz} B min+gz`);
  assert.ok(full.gz <= 20 * KB, `core+renderer is ${full.gz} B min+gz`);
  assert.ok(full.gz > core.gz, 'the full build includes the renderer');
});

test('no runtime dependencies: the modules import only each other', () => {
  for (const f of ['herald-core.js', 'herald-render.js', 'herald.js']) {
    const src = readFileSync(join(JS, f), 'utf8');
    const specifiers = [...src.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1]);
    for (const s of specifiers) assert.match(s, /^\.\/herald-(core|render)\.js$/, `${f} imports ${s}`);
  }
  assert.equal(json(join(JS, 'package.json')).dependencies, undefined);
  const core = readFileSync(join(JS, 'herald-core.js'), 'utf8');
  assert.doesNotMatch(core, /\bdocument\b/, 'the core never touches the DOM');
});
