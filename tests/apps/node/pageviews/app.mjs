// Page-view tracking api (express + ioredis), run in PM2 cluster mode. Requests queue events in a list; a
// periodic flush folds them into per-day counters.
import express from 'express';
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
const app = express();
app.use(express.json());

app.post('/track', async (req, res) => {
  await redis.rpush('events:pending', JSON.stringify({ page: req.body.page, at: Date.now() }));
  res.sendStatus(202);
});
app.listen(Number(process.env.PORT));

// The flush is meant to run once for the whole app: SINGLE_FLUSHER=1 keeps it on instance 0 only.
const flusher = process.env.SINGLE_FLUSHER !== '1' || process.env.NODE_APP_INSTANCE === '0';
if (flusher) {
  setInterval(async () => {
    const events = await redis.lpop('events:pending', 50);
    if (!events) return;
    const day = new Date().toISOString().slice(0, 10);
    const counts = {};
    for (const raw of events) {
      const { page } = JSON.parse(raw);
      counts[page] = (counts[page] || 0) + 1;
    }
    const multi = redis.multi();
    for (const [page, n] of Object.entries(counts)) multi.hincrby(`pageviews:${day}`, page, n);
    multi.expire(`pageviews:${day}`, 7 * 86400);
    await multi.exec();
  }, 500);
}
