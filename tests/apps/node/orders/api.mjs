// The shop api (node-redis): stores each new order as a hash and announces it on a channel.
import { createClient } from 'redis';

const client = createClient({ url: process.env.REDIS_URL, database: Number(process.env.REDIS_DB || 0) });
client.on('error', (err) => console.error('redis', err.message));
await client.connect();

let order = 0;
setInterval(async () => {
  order += 1;
  const key = `order:${order}`;
  await client.hSet(key, { id: String(order), sku: `sku-${order % 7}`, qty: '1', status: 'new' });
  await client.expire(key, 120);
  await client.publish('orders:new', String(order));
}, 150);
