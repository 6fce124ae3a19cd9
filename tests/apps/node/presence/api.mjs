// The chat api (ioredis): a user coming online gets a presence key with a short TTL; a heartbeat service keeps
// it alive while they stay; they leave after a while.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
const key = (id) => `presence:user:${id}`;
let user = 0;

setInterval(async () => {
  user += 1;
  const id = user;
  await redis.set(key(id), JSON.stringify({ id, status: 'online', since: Date.now() }), 'EX', 2);
  await redis.sadd('presence:online', id);
  setTimeout(async () => {
    await redis.srem('presence:online', id);
    await redis.del(key(id));
  }, 5000);
}, 300);

// Who is online, for the contact list.
setInterval(async () => {
  const ids = await redis.smembers('presence:online');
  if (ids.length) await redis.mget(ids.map(key));
}, 400);
