// The heartbeat service (ioredis): every 500 ms, extends the presence TTL of every online user.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
const template = process.env.PRESENCE_KEY || 'presence:user:{id}';
setInterval(async () => {
  const ids = await redis.smembers('presence:online');
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.expire(template.replace('{id}', id), 2);
  await pipeline.exec();
}, 500);
