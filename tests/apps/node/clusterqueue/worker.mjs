// The fulfilment worker (ioredis Cluster): the reliable-queue pattern, LMOVE pending -> processing, work, LREM.
// The two lists must share a hash slot for LMOVE on a cluster: '{orders}:pending' and '{orders}:processing' do;
// QUEUE_PENDING/QUEUE_PROCESSING without the hash tag do not, and every LMOVE is refused with CROSSSLOT.
import { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);
const PENDING = process.env.QUEUE_PENDING || '{orders}:pending';
const PROCESSING = process.env.QUEUE_PROCESSING || '{orders}:processing';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

for (;;) {
  let job = null;
  try {
    job = await cluster.lmove(PENDING, PROCESSING, 'RIGHT', 'LEFT');
  } catch (err) {
    console.error(`lmove failed: ${err.message}`);
  }
  if (!job) {
    await sleep(100);
    continue;
  }
  await sleep(10); // ship it
  await cluster.lrem(PROCESSING, 1, job);
}
