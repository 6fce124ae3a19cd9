// The api side of a mail service: every signup enqueues a welcome email on a BullMQ queue.
import { Queue } from 'bullmq';

const connection = { url: process.env.REDIS_URL };
const queue = new Queue('emails', { connection, prefix: process.env.BULL_PREFIX || 'bull' });

let signup = 0;
setInterval(async () => {
  signup += 1;
  try {
    // DELAYED_EVERY=n: every n-th email is a reminder sent half a second later.
    const delayed = Number(process.env.DELAYED_EVERY || 0) && signup % Number(process.env.DELAYED_EVERY) === 0;
    await queue.add(delayed ? 'reminder' : 'welcome', { to: `user${signup}@example.com`, template: 'welcome' },
      { removeOnComplete: 100, removeOnFail: 500, attempts: 3, backoff: { type: 'fixed', delay: 200 },
        ...(delayed ? { delay: 500 } : {}) });
  } catch (err) {
    console.error('enqueue failed', err.message);
  }
}, 150);

process.on('SIGINT', async () => { await queue.close(); process.exit(0); });
