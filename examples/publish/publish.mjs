#!/usr/bin/env node
// Publish an in-app message, or store a campaign, through Herald's admin HTTP
// API with the Node client library (clients/node, `@herald/client`).
//
//   npm ci --prefix examples/publish        # links clients/node; in your project: npm install @herald/client
//   node examples/publish/publish.mjs examples/envelopes/transaction-confirmation.json
//   node examples/publish/publish.mjs examples/campaigns/plan-limit-upgrade.json
//
//   HERALD_API_URL   the node's admin listener (default http://127.0.0.1:9090)
//   HERALD_API_KEY   sent as "Authorization: Bearer <key>" when set
//
// A file with a "trigger" is a campaign: it is stored with PUT /v1/campaigns/{id}.
// Anything else is an envelope, published with POST /v1/messages (a retraction,
// {"op": "retract", "id": "..."}, goes the same way). The library checks it
// against the envelope schema first, and Herald checks it again.
//
// Prints Herald's answer, e.g. {"id":"01J...","online":["u_123"],"offline":[]};
// exits 1 with the reason on a refusal, 2 when the node cannot be reached.

import { readFile } from 'node:fs/promises';
import { HeraldError, HttpClient, Unavailable } from '@herald/client';

async function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: publish.mjs FILE.json');
    return 64;
  }
  const [file] = argv;
  let document;
  try {
    document = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    console.error(`${file}: ${e instanceof SyntaxError ? `not JSON: ${e.message}` : e.message}`);
    return 1;
  }

  const herald = HttpClient.fromEnv();
  try {
    const answer = document && typeof document === 'object' && 'trigger' in document
      ? await herald.putCampaign(document)
      : await herald.publish(document);
    console.log(JSON.stringify(answer));
    return 0;
  } catch (e) {
    if (e instanceof Unavailable) {
      console.error(e.message);
      return 2;
    }
    if (e instanceof HeraldError) {
      // InvalidMessage, Refused, AuthError
      console.error(`${file}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
