// An API gateway (express + ioredis) with a per-user rate limit. LIMITER=flexible uses rate-limiter-flexible;
// otherwise the team's own fixed-window counter: INCRBY the request's cost, EXPIRE when the window opens.
import express from 'express';
import Redis from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';

const redis = new Redis(process.env.REDIS_URL);
const WINDOW = 1; // seconds
const LIMIT = 40;
const COST = { '/search': 1, '/export': 5 };

const flexible = new RateLimiterRedis({ storeClient: redis, keyPrefix: 'rl', points: LIMIT, duration: WINDOW });

async function allowFixedWindow(user, cost) {
  const key = `ratelimit:${user}`;
  const used = await redis.incrby(key, cost);
  // The window opens with the first request: give the counter its TTL then.
  const opened = process.env.WINDOW_OPENS_AT === 'first-unit' ? used === 1 : used === cost;
  if (opened) await redis.expire(key, WINDOW);
  return used <= LIMIT;
}

async function allowFlexible(user, cost) {
  try {
    await flexible.consume(user, cost);
    return true;
  } catch {
    return false;
  }
}

const allow = process.env.LIMITER === 'flexible' ? allowFlexible : allowFixedWindow;
const app = express();
app.use(async (req, res, next) => {
  const ok = await allow(req.get('x-user') || req.ip, COST[req.path] || 1);
  return ok ? next() : res.sendStatus(429);
});
app.get('/search', (req, res) => res.json({ results: [] }));
app.get('/export', (req, res) => res.json({ rows: 5000 }));
app.listen(Number(process.env.PORT));
