// The fulfilment worker (node-redis): on every announced order, reads it and marks it packed.
import { createClient } from 'redis';

const client = createClient({ url: process.env.REDIS_URL, database: Number(process.env.REDIS_DB || 0) });
client.on('error', (err) => console.error('redis', err.message));
await client.connect();
const subscriber = client.duplicate();
await subscriber.connect();

await subscriber.subscribe('orders:new', async (id) => {
  const order = await client.hGetAll(`order:${id}`);
  if (!order.id) {
    console.warn(`order ${id} not found`);
    return;
  }
  await client.hSet(`order:${id}`, 'status', 'packed');
});
