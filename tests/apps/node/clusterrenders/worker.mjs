// The render worker (ioredis Cluster): told a job id over HTTP, it loads render:<id> from the cluster REDIS_URL
// names and renders it. Deployed with the staging cluster's URL by mistake, it finds no job at all: both clusters
// run the same version on the same ports, so nothing else looks wrong.
import http from 'node:http';
import { Cluster } from 'ioredis';

const { hostname, port } = new URL(process.env.REDIS_URL);
const cluster = new Cluster([{ host: hostname, port: Number(port) }]);
let missing = 0;

http.createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', async () => {
    const job = await cluster.get(`render:${body}`);
    if (job === null) {
      missing += 1;
      console.error(`render ${body}: no such job (${missing} missing)`);
    }
    response.end(job === null ? 'missing' : 'ok');
  });
}).listen(Number(process.env.HTTP_PORT), '127.0.0.1');
