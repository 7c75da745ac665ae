// A WebSocket man in the middle between the client under test and the real
// node: it records every connection attempt (when, which URL, which token)
// and every frame both ways, and lets a check do to the client what the
// network and the node can do: drop it without a close frame, close it with
// any code (4029, 1013, 1012, 1008 …), refuse new upgrades for a while,
// or slip in a frame the node did not send (a duplicate).

import { createServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';

export class Proxy {
  /** @param upstream the node's base URL, e.g. http://127.0.0.1:8080 */
  constructor(upstream) {
    this.upstream = upstream.replace(/^http/, 'ws');
    /** Every upgrade request: {at, url: URL, token, refused, conn}. */
    this.attempts = [];
    /** Refuse upgrades (503) while true: the node is unreachable. */
    this.refusing = false;
  }

  async start() {
    this.wss = new WebSocketServer({ noServer: true });
    this.server = createServer((req, res) => {
      res.writeHead(404);
      res.end();
    });
    this.server.on('upgrade', (req, socket, head) => this._upgrade(req, socket, head));
    await new Promise((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async stop() {
    for (const a of this.attempts) a.conn?.kill();
    await new Promise((ok) => this.server.close(ok));
  }

  /** The newest connection that reached the node. */
  get current() {
    for (let i = this.attempts.length - 1; i >= 0; i--) if (this.attempts[i].conn) return this.attempts[i].conn;
    return null;
  }

  _upgrade(req, socket, head) {
    const url = new URL(req.url, 'http://proxy');
    const auth = req.headers.authorization || '';
    const token = url.searchParams.get('token') || (auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : null);
    const attempt = { at: Date.now(), url, token, refused: this.refusing, conn: null };
    this.attempts.push(attempt);
    if (this.refusing) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    const headers = {};
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    if (req.headers.origin) headers.origin = req.headers.origin;
    const up = new WebSocket(`${this.upstream}${url.pathname}${url.search}`, { headers });
    up.once('unexpected-response', (_req, res) => {
      // The node refused the handshake: pass its status on.
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        socket.end(`HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      });
    });
    up.once('error', () => socket.destroy());
    up.once('open', () => {
      this.wss.handleUpgrade(req, socket, head, (client) => {
        attempt.conn = new Connection(client, up);
      });
    });
  }
}

/** One client socket and its upstream twin. */
class Connection {
  constructor(client, up) {
    this.client = client;
    this.up = up;
    /** Frames the client sent and the node sent, parsed. */
    this.sent = [];
    this.received = [];
    /** The close the client saw: {code, reason, by}, or null while open. */
    this.closed = null;
    client.on('message', (data) => {
      const text = String(data);
      this.sent.push(parse(text));
      if (up.readyState === WebSocket.OPEN) up.send(text);
    });
    up.on('message', (data) => {
      const text = String(data);
      this.received.push(parse(text));
      if (client.readyState === WebSocket.OPEN) client.send(text);
    });
    up.on('close', (code, reason) => {
      if (!this.closed) this.closed = { code, reason: String(reason), by: 'node' };
      if (code === 1005 || code === 1006) client.terminate();
      else if (client.readyState === WebSocket.OPEN) client.close(code, reason);
    });
    client.on('close', (code, reason) => {
      if (!this.closed) this.closed = { code, reason: String(reason), by: 'client' };
      if (up.readyState === WebSocket.OPEN) up.close();
    });
    up.on('error', () => client.terminate());
    client.on('error', () => up.terminate());
  }

  get open() {
    return this.closed === null;
  }

  /** The network is gone: both sockets end without a close frame. */
  kill() {
    if (!this.closed) this.closed = { code: 1006, reason: '', by: 'network' };
    this.client.terminate();
    this.up.terminate();
  }

  /** Closes the client with `code` as if the node had (the node's side just ends). */
  closeWith(code, reason = '') {
    if (!this.closed) this.closed = { code, reason, by: 'kit' };
    this.client.close(code, reason);
    this.up.terminate();
  }

  /** Sends the client a frame the node did not send. */
  inject(frame) {
    this.received.push(frame);
    this.client.send(JSON.stringify(frame));
  }

  sentOf(t) {
    return this.sent.filter((f) => f && f.t === t);
  }

  receivedOf(t) {
    return this.received.filter((f) => f && f.t === t);
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { unparsed: text };
  }
}
