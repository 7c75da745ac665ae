// Socket.IO peer for herald-bench compare, with @socket.io/redis-adapter as a
// multi-node Socket.IO deployment runs it. The WebSocket transport only
// (Engine.IO v4 at /socket.io/?EIO=4&transport=websocket&token=JWT). The
// token (HS256) is verified before the upgrade (allowRequest; 403
// otherwise). After the client's CONNECT ("40") the server emits
// 42["hello",{...}]; every PUBLISH on {prefix}:broadcast and
// {prefix}:user:{id} is emitted as 42["msg",<payload>] to the local sockets
// (the payload parsed once per message, so the client sees the same JSON).
// Each node subscribes to Herald's channels itself, so it emits locally;
// the adapter carries what Socket.IO itself broadcasts between nodes.
// GET /readyz and GET /v1/stats ({"sessions": n}) for the orchestrator.
'use strict';
const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const Redis = require('ioredis');
const { settings, verify, bus } = require('./common');

const cfg = settings();
let sessions = 0;

const httpServer = http.createServer((req, res) => {
  if (req.url === '/readyz') {
    res.end('ready');
  } else if (req.url === '/v1/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sessions, peer: 'socketio' }));
  } else {
    res.statusCode = 404;
    res.end();
  }
});

const pub = new Redis(cfg.redisUrl);
const adapterSub = pub.duplicate();
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  adapter: createAdapter(pub, adapterSub, { key: `${cfg.prefix}:socket.io` }),
  allowRequest: (req, callback) => {
    const token = new URL(req.url, 'http://x').searchParams.get('token');
    const user = verify(token, cfg.secret);
    if (user === null) {
      callback('invalid token', false);
      return;
    }
    req.heraldUser = user;
    callback(null, true);
  },
});

const b = bus(
  cfg,
  (payload) => io.local.emit('msg', JSON.parse(payload)),
  (user, payload) => io.local.to(`u:${user}`).emit('msg', JSON.parse(payload)),
);

io.on('connection', (socket) => {
  const user = socket.request.heraldUser;
  sessions += 1;
  socket.join(`u:${user}`);
  b.join(user);
  socket.emit('hello', { user, peer: 'socketio' });
  socket.on('disconnect', () => {
    sessions -= 1;
    b.leave(user);
  });
});

b.ready.then(() => {
  httpServer.listen(cfg.port, '127.0.0.1', () => {
    console.log(`socketio: listening on 127.0.0.1:${cfg.port}`);
  });
});
process.on('SIGTERM', () => process.exit(0));
