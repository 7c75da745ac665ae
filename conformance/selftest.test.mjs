// The kit's own negative control: run against a deliberately wrong client
// (clients/naive.mjs), the checks it must catch fail, and the handshake,
// which that client does right, passes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// A child of the test runner would report to it instead of printing TAP.
const { NODE_TEST_CONTEXT: _, ...parentEnv } = process.env;

test('the kit fails a client that ignores since, dedupe, backoff, refresh and 1008', () => {
  const run = spawnSync(
    process.execPath,
    ['--test', '--test-reporter=tap', '--test-concurrency=1', resolve(here, 'conformance.test.mjs')],
    {
      env: {
        ...parentEnv,
        HERALD_CONFORMANCE_CLIENT: `${process.execPath} ${resolve(here, 'clients/naive.mjs')}`,
        HERALD_CONFORMANCE_PATIENCE_MS: '4000',
      },
      encoding: 'utf8',
      timeout: 300000,
    },
  );
  const tap = run.stdout;
  const result = (name) => {
    const line = tap.split('\n').find((l) => /^(not )?ok \d+ - /.test(l) && l.includes(name));
    assert.ok(line, `no result for "${name}" in:\n${tap}`);
    return line.startsWith('ok');
  };
  assert.equal(result('handshake'), true, 'the positive control: what the naive client does right passes');
  for (const check of ['resume', 'token refresh', '4029', '1013', '1012', '1008', 'acks']) {
    assert.equal(result(check), false, `the kit must fail the naive client on ${check}`);
  }
  assert.notEqual(run.status, 0);
});
