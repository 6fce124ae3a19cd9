// The mail worker: sends the emails the api enqueues (the sending is a short sleep here).
import { Worker } from 'bullmq';

const connection = { url: process.env.REDIS_URL };
const worker = new Worker('emails', async (job) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  // FAIL_EVERY=n: the mail provider times out on the first try of every n-th email (retried with backoff).
  const every = Number(process.env.FAIL_EVERY || 0);
  if (every && Number(job.id) % every === 0 && job.attemptsMade === 0) throw new Error('SMTP timeout');
  return { delivered: job.data.to };
}, {
  connection,
  prefix: process.env.BULL_PREFIX || 'bull',
  concurrency: Number(process.env.CONCURRENCY || 2),
  // An idle worker waits this long in BZPOPMIN (default 5 s): shorter than a capture, so every capture sees the
  // worker wait (with 5 s, a 4 s capture could begin and end inside one wait: nothing but CLIENT LIST's flags=b).
  drainDelay: 2,
});

worker.on('failed', (job, err) => console.warn(`job ${job?.id} failed: ${err.message}`));
process.on('SIGINT', async () => { await worker.close(); process.exit(0); });
