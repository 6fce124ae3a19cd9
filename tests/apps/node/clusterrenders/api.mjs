// The render api on a Redis Cluster (ioredis Cluster): saves each render job (render:<id>, EX 60), then tells the
// worker its id over HTTP, the way a web tier hands work to a service of its own.
import http from 'node:http';
import { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);
const WORKER = `http://127.0.0.1:${process.env.WORKER_PORT}/render`;

let job = 0;
setInterval(async () => {
  job += 1;
  await cluster.set(`render:${job}`, JSON.stringify({ job, template: 'invoice', at: Date.now() }), 'EX', 60);
  const request = http.request(WORKER, { method: 'POST' }, (response) => response.resume());
  request.on('error', () => {});  // the worker is still starting: the job waits in Redis
  request.end(String(job));
}, 150);
