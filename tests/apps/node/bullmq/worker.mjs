// The mail worker: sends the emails the api enqueues (the sending is a short sleep here).
import { Worker } from 'bullmq';

const connection = { url: process.env.REDIS_URL };
const worker = new Worker('emails', async (job) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  return { delivered: job.data.to };
}, { connection, prefix: process.env.BULL_PREFIX || 'bull', concurrency: 2 });

worker.on('failed', (job, err) => console.error(`job ${job?.id} failed: ${err.message}`));
process.on('SIGINT', async () => { await worker.close(); process.exit(0); });
