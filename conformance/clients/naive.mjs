#!/usr/bin/env node
// A deliberately wrong client, for the kit's own test (selftest.test.mjs):
// it reconnects at once whatever the close code, with the same token and
// without `since`, hands every msg frame to the app (no dedupe), never
// refreshes its token and drops acks made offline. The kit must fail it.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const out = (e) => process.stdout.write(`${JSON.stringify(e)}\n`);
let ws = null;
let stopped = false;

function open(cmd, token) {
  const url = `${cmd.url.replace(/^http/, 'ws')}/v1/ws?token=${encodeURIComponent(token)}`;
  ws = new WebSocket(url);
  ws.on('message', (data) => {
    const f = JSON.parse(String(data));
    if (f.t === 'hello') out({ event: 'state', state: 'open' });
    if (f.t === 'msg') out({ event: 'message', msg: f });
  });
  ws.on('close', (code) => {
    if (stopped) return;
    out({ event: 'state', state: 'reconnecting', code });
    setTimeout(() => open(cmd, token), 50);
  });
  ws.on('error', () => {});
}

createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'connect') {
    const token = cmd.token || (await (await fetch(cmd.token_url)).json()).token;
    out({ event: 'state', state: 'connecting' });
    open(cmd, token);
  } else if (cmd.cmd === 'ack') {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'ack', id: cmd.id, status: cmd.status, action: cmd.action }));
  } else if (cmd.cmd === 'close') {
    stopped = true;
    ws?.close();
    process.exit(0);
  }
});
