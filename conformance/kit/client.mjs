// The client under test, behind the stdio adapter of docs/PROTOCOL.md
// ("The conformance kit"): a process that reads commands as JSON lines on
// stdin and writes what the app would see as JSON lines on stdout.
//
// The command: HERALD_CONFORMANCE_CLIENT (split on spaces), else the JS
// core's adapter in clients/js-core.mjs.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { until } from './environment.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export function clientCommand() {
  const custom = process.env.HERALD_CONFORMANCE_CLIENT;
  if (custom) return custom.split(' ').filter(Boolean);
  return [process.execPath, resolve(here, '../clients/js-core.mjs')];
}

/** Serves tokens at GET /token?sub=…&ttl=…, minted by `mint(sub, ttl)`, and remembers each. */
export class TokenSource {
  constructor(mint) {
    this.mint = mint;
    this.issued = [];
  }
  async start() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url, 'http://tokens');
      if (url.pathname !== '/token') {
        res.writeHead(404);
        return res.end();
      }
      const token = this.mint(url.searchParams.get('sub'), Number(url.searchParams.get('ttl') || 3600));
      this.issued.push(token);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token }));
    });
    await new Promise((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }
  url(sub, ttl = 3600) {
    return `${this.base}/token?sub=${encodeURIComponent(sub)}&ttl=${ttl}`;
  }
  stop() {
    return new Promise((ok) => this.server.close(ok));
  }
}

/** One client process: send it commands, read what it reported. */
export class ClientUnderTest {
  constructor() {
    const [cmd, ...args] = clientCommand();
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.events = [];
    this.exited = new Promise((r) => this.proc.once('exit', r));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      try {
        const e = JSON.parse(line);
        if (e && typeof e.event === 'string') this.events.push({ ...e, at: Date.now() });
      } catch {
        /* not ours */
      }
    });
  }

  send(cmd) {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  connect(url, auth) {
    this.send({ cmd: 'connect', url, ...auth });
  }

  ack(id, status, action) {
    this.send({ cmd: 'ack', id, status, ...(action ? { action } : {}) });
  }

  /** Messages the app was given, in order. */
  messages() {
    return this.events.filter((e) => e.event === 'message').map((e) => e.msg);
  }

  states() {
    return this.events.filter((e) => e.event === 'state');
  }

  get state() {
    return this.states().at(-1)?.state;
  }

  waitState(state, what = `state ${state}`) {
    return until(`the client to report ${what}`, () => this.states().find((s, i, all) => s.state === state && i === all.length - 1));
  }

  waitMessage(id) {
    return until(`the client to hand message ${id} to the app`, () => this.messages().find((m) => m.id === id));
  }

  async close() {
    if (this.proc.exitCode !== null) return;
    this.send({ cmd: 'close' });
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}
