// uWebSockets.js peer for herald-bench compare. Same contract as Herald's
// public listener for the bench: GET /v1/ws?token=JWT (HS256, verified
// before the upgrade; 401 otherwise), a {"t":"hello"} first frame, every
// PUBLISH on {prefix}:broadcast and {prefix}:user:{id} forwarded unchanged
// as a text frame. GET /readyz and GET /v1/stats ({"sessions": n}) for the
// orchestrator.
'use strict';
const path = require('node:path');
const { settings, verify, bus } = require('./common');

// The native addon itself, never the package's JavaScript fallback (which
// its loader picks silently when the binary does not load).
const binary = path.join(
  path.dirname(require.resolve('uWebSockets.js/package.json')),
  'binaries',
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
);
const uWS = require(binary);

const cfg = settings();
let sessions = 0;
const app = uWS.App();
const b = bus(
  cfg,
  (payload) => app.publish('b', payload, false),
  (user, payload) => app.publish(`u:${user}`, payload, false),
);

app.ws('/v1/ws', {
  idleTimeout: 60,
  maxPayloadLength: 16 * 1024,
  maxBackpressure: 1024 * 1024,
  upgrade: (res, req, context) => {
    const user = verify(new URLSearchParams(req.getQuery() || '').get('token'), cfg.secret);
    if (user === null) {
      res.writeStatus('401 Unauthorized').end('invalid token');
      return;
    }
    res.upgrade(
      { user },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const { user } = ws.getUserData();
    sessions += 1;
    ws.subscribe('b');
    ws.subscribe(`u:${user}`);
    b.join(user);
    ws.send(JSON.stringify({ t: 'hello', user, peer: 'uws' }), false);
  },
  message: () => {},
  close: (ws) => {
    sessions -= 1;
    b.leave(ws.getUserData().user);
  },
});
app.get('/readyz', (res) => {
  res.end('ready');
});
app.get('/v1/stats', (res) => {
  res.writeHeader('content-type', 'application/json').end(JSON.stringify({ sessions, peer: 'uws' }));
});

b.ready.then(() => {
  app.listen('127.0.0.1', cfg.port, (token) => {
    if (!token) {
      console.error(`uws: cannot listen on 127.0.0.1:${cfg.port}`);
      process.exit(1);
    }
    console.log(`uws: listening on 127.0.0.1:${cfg.port} (native ${path.basename(binary)})`);
  });
});
process.on('SIGTERM', () => process.exit(0));
