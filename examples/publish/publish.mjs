#!/usr/bin/env node
// Publish an in-app message, or store a campaign, through Herald's admin HTTP API.
//
// Node 20 or later (global fetch), no dependencies.
//
//   node examples/publish/publish.mjs examples/envelopes/transaction-confirmation.json
//   node examples/publish/publish.mjs examples/campaigns/plan-limit-upgrade.json
//
//   HERALD_API_URL   the node's admin listener (default http://127.0.0.1:9090)
//   HERALD_API_KEY   sent as "Authorization: Bearer <key>" when set
//
// A file with a "trigger" is a campaign: it is stored with PUT /v1/campaigns/{id}.
// Anything else is an envelope, published with POST /v1/messages (a retraction,
// {"op": "retract", "id": "..."}, goes the same way). The file is sent as it is;
// Herald checks it and answers 400 with the reason if it is wrong.
//
// Prints Herald's answer, e.g. {"id":"01J...","online":["u_123"],"offline":[]};
// exits 1 with the reason on a refusal, 2 when the node cannot be reached.

import { readFile } from 'node:fs/promises';

const API_URL = (process.env.HERALD_API_URL || 'http://127.0.0.1:9090').replace(/\/+$/, '');
const API_KEY = process.env.HERALD_API_KEY;

async function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: publish.mjs FILE.json');
    return 64;
  }
  const [file] = argv;
  let body;
  try {
    body = await readFile(file, 'utf8');
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    return 1;
  }
  let document;
  try {
    document = JSON.parse(body);
  } catch (e) {
    console.error(`${file}: not JSON: ${e.message}`);
    return 1;
  }

  let method = 'POST';
  let path = '/v1/messages';
  if (document && typeof document === 'object' && 'trigger' in document) {
    if (!document.id) {
      console.error(`${file}: a campaign file needs an "id"`);
      return 1;
    }
    method = 'PUT';
    path = `/v1/campaigns/${encodeURIComponent(document.id)}`;
  }

  const headers = { 'content-type': 'application/json' };
  if (API_KEY) headers.authorization = `Bearer ${API_KEY}`;
  let res;
  try {
    res = await fetch(API_URL + path, { method, headers, body, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    console.error(`cannot reach Herald at ${API_URL}: ${e.cause?.message ?? e.message}`);
    return 2;
  }
  const text = await res.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = { error: text };
  }
  if (!res.ok) {
    console.error(`${method} ${path} answered ${res.status}: ${answer.error ?? text}`);
    return 1;
  }
  console.log(JSON.stringify(answer));
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
