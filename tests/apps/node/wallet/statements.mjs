// The statements service (ioredis): reads balances and recent ledger entries.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
setInterval(async () => {
  const account = 1 + Math.floor(Math.random() * 20);
  await redis.get(`balance:${account}`);
  await redis.lrange(`ledger:${account}`, -5, -1);
}, 200);
