#!/usr/bin/env node
// sdk/js's core behind the conformance kit's stdio adapter (docs/PROTOCOL.md,
// "The conformance kit"): commands in on stdin, what the app sees out on
// stdout, one JSON object a line. A native SDK's adapter does the same in
// its own language.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { Herald } from '../../sdk/js/herald-core.js';

const out = (e) => process.stdout.write(`${JSON.stringify(e)}\n`);
let client = null;

function connect(cmd) {
  const auth = cmd.token_url
    ? { getToken: async () => (await (await fetch(cmd.token_url)).json()).token }
    : { token: cmd.token };
  client = Herald.connect({ url: cmd.url, WebSocket, autoPageView: false, ...auth });
  client.on('state', (s) => {
    // The core's states are the adapter's: connecting, open, reconnecting, closed.
    out({ event: 'state', state: s.state, ...(s.code ? { code: s.code } : {}) });
  });
  client.on('message', (msg) => out({ event: 'message', msg }));
  client.on('retract', (r) => out({ event: 'retract', id: r && r.id }));
}

createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    return;
  }
  switch (cmd.cmd) {
    case 'connect':
      return connect(cmd);
    case 'ack':
      return client && client.ack(cmd.id, cmd.status, cmd.action);
    case 'close':
      if (client) client.close();
      return process.exit(0);
    default:
  }
}).on('close', () => {
  if (client) client.close();
  process.exit(0);
});
