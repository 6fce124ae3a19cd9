// The web tier on a Redis Cluster (ioredis Cluster): a session per visitor, session:<id> EX 60, spread over the
// primaries by their hash slots.
import { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);

let visitor = 0;
setInterval(async () => {
  visitor += 1;
  await cluster.set(`session:${visitor}`, JSON.stringify({ visitor, cart: [], at: Date.now() }), 'EX', 60);
  await cluster.get(`session:${Math.max(1, visitor - 3)}`);
}, 100);
