// The feed api (ioredis): builds a user's home feed when they open the app, keeps it 30 s, reads it back.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
let user = 0;
setInterval(async () => {
  user += 1;
  const key = `feed:${user}`;
  await redis.rpush(key, ...Array.from({ length: 10 }, (_, i) => `post:${user * 10 + i}`));
  await redis.expire(key, 30);
  await redis.sadd('feeds:active', user);
}, 300);
setInterval(async () => {
  const users = await redis.srandmember('feeds:active', 3);
  for (const u of users) {
    const items = await redis.lrange(`feed:${u}`, 0, 9);
    if (!items.length) console.warn(`feed of ${u} is gone`);
  }
}, 200);
