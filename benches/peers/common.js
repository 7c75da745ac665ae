// Shared by the peer servers: settings from the environment, HS256 JWT
// verification (node:crypto, no dependency), and the Redis subscriptions
// Herald uses: {prefix}:broadcast, and {prefix}:user:{id} while that user
// has a session here (counted, so the last session to leave unsubscribes).
'use strict';
const crypto = require('node:crypto');
const Redis = require('ioredis');

function settings() {
  const need = (k) => {
    const v = process.env[k];
    if (!v) {
      console.error(`${k} is required`);
      process.exit(2);
    }
    return v;
  };
  return {
    port: Number(need('PEER_PORT')),
    redisUrl: need('PEER_REDIS_URL'),
    prefix: need('PEER_PREFIX'),
    secret: need('PEER_SECRET'),
  };
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// Returns the token's `sub`, or null when the token is not a valid,
// unexpired HS256 JWT signed with `secret`.
function verify(token, secret) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = b64urlJson(parts[0]);
    if (header.alg !== 'HS256') return null;
    const want = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
    const got = Buffer.from(parts[2], 'base64url');
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
    const claims = b64urlJson(parts[1]);
    if (typeof claims.sub !== 'string' || claims.sub === '') return null;
    if (typeof claims.exp !== 'number' || claims.exp <= Date.now() / 1000) return null;
    return claims.sub;
  } catch {
    return null;
  }
}

// onBroadcast(payload) and onUser(user, payload) get each PUBLISH unchanged.
function bus({ redisUrl, prefix }, onBroadcast, onUser) {
  const sub = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: null });
  const broadcast = `${prefix}:broadcast`;
  const userPrefix = `${prefix}:user:`;
  const users = new Map();
  sub.on('message', (channel, payload) => {
    if (channel === broadcast) onBroadcast(payload);
    else if (channel.startsWith(userPrefix)) onUser(channel.slice(userPrefix.length), payload);
  });
  sub.on('error', (e) => console.error(`redis: ${e.message}`));
  const ready = sub.subscribe(broadcast);
  return {
    ready,
    join(user) {
      const n = users.get(user) || 0;
      users.set(user, n + 1);
      if (n === 0) sub.subscribe(userPrefix + user).catch((e) => console.error(`subscribe: ${e.message}`));
    },
    leave(user) {
      const n = users.get(user) || 0;
      if (n <= 1) {
        users.delete(user);
        if (n === 1) sub.unsubscribe(userPrefix + user).catch(() => {});
      } else {
        users.set(user, n - 1);
      }
    },
    redis: sub,
  };
}

module.exports = { settings, verify, bus };
