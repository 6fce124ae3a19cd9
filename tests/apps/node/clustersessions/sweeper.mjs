// The sessions report (ioredis): every 500 ms it counts the live sessions with SCAN MATCH session:* and publishes
// the count in stats:sessions. SCAN answers for the node it is sent to: SWEEP=every-primary scans each primary of
// the cluster (cluster.nodes('master')); SWEEP=url scans the node REDIS_URL names, as the job did before the move to
// a cluster, and trusts that as every session.
import Redis, { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);
const single = process.env.SWEEP === 'url' ? new Redis(process.env.REDIS_URL) : null;

async function scanNode(node) {
  let cursor = '0';
  let count = 0;
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', 'session:*', 'COUNT', 100);
    cursor = next;
    count += keys.length;
  } while (cursor !== '0');
  return count;
}

setInterval(async () => {
  const nodes = single ? [single] : cluster.nodes('master');
  const counts = await Promise.all(nodes.map(scanNode));
  await cluster.set('stats:sessions', String(counts.reduce((a, b) => a + b, 0)));
}, 500);
