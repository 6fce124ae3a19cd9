// The recommendations service: reads profiles from the shared cache written by the account service.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL, { keyPrefix: process.env.CACHE_PREFIX });
let misses = 0;
setInterval(async () => {
  const id = 1 + Math.floor(Math.random() * 50);
  const raw = await redis.get(`profile:${id}`);
  if (raw === null) {
    misses += 1;
    if (misses % 10 === 1) console.warn(`profile ${id} not in cache (${misses} misses)`);
    return;
  }
  const user = JSON.parse(raw);
  if (user.plan === 'pro') await redis.get(`profile:${1 + (id % 50)}`);
}, 100);
