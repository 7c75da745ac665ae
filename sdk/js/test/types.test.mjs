// The type declarations compile against how the packages are used (tsc, strict).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO } from '../test-helpers/herald-node.mjs';

test('herald.d.ts, herald-core.d.ts, herald-render.d.ts and @herald/react index.d.ts type-check their documented use', () => {
  const tsc = join(REPO, 'sdk/node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(REPO, 'sdk/js/test/types')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});
