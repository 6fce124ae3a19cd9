// The api (ioredis): each login stores a session with a TTL.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
let n = 0;
setInterval(async () => {
  n += 1;
  try {
    await redis.set(`session:${n}`, JSON.stringify({ user: `user${n}`, at: Date.now() }), 'EX', 600);
  } catch (err) {
    console.error(`login ${n}: session not stored: ${err.message}`);
  }
}, 100);
