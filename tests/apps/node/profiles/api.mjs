// The account service: keeps every user's profile in the shared cache (ioredis, keyPrefix from CACHE_PREFIX).
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL, { keyPrefix: process.env.CACHE_PREFIX });
const USERS = 50;

function profile(id) {
  return JSON.stringify({ id, name: `user ${id}`, plan: id % 3 ? 'free' : 'pro', updatedAt: Date.now() });
}

for (let id = 1; id <= USERS; id += 1) await redis.set(`profile:${id}`, profile(id), 'EX', 30);

let next = 0;
setInterval(async () => {
  next = (next % USERS) + 1; // a user edits their profile
  await redis.set(`profile:${next}`, profile(next), 'EX', 30);
}, 100);
