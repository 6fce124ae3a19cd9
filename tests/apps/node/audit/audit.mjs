// The audit logger (node-redis): every request's payload appended to one list, kept forever.
import { createClient } from 'redis';

const client = createClient({ url: process.env.REDIS_URL });
client.on('error', (err) => console.error('redis', err.message));
await client.connect();
const payload = 'p'.repeat(20000);
let n = 0;
let failed = 0;
setInterval(async () => {
  n += 1;
  try {
    await client.lPush('audit:requests', JSON.stringify({ n, at: Date.now(), payload }));
  } catch (err) {
    if ((failed += 1) % 50 === 1) console.error(`audit write failed: ${err.message}`);
  }
}, 10);
