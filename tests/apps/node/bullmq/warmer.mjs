// The cache warmer (node-redis): every second, clears the cache and loads the best sellers again.
import { createClient } from 'redis';

const client = createClient({ url: process.env.REDIS_URL });
client.on('error', (err) => console.error('redis', err.message));
await client.connect();
setInterval(async () => {
  await client.flushDb();
  for (let id = 1; id <= 20; id += 1) {
    await client.set(`cache:product:${id}`, JSON.stringify({ id, rank: id }), { EX: 300 });
  }
}, 1000);
