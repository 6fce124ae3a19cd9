// The order api on a Redis Cluster (ioredis Cluster): queues each order for the fulfilment worker (LPUSH on the
// pending list named by QUEUE_PENDING).
import { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);
const PENDING = process.env.QUEUE_PENDING || '{orders}:pending';

let order = 0;
setInterval(async () => {
  order += 1;
  await cluster.lpush(PENDING, JSON.stringify({ order, at: Date.now() }));
}, 100);
