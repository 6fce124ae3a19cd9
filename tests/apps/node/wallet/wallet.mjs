// The wallet service (ioredis): each transfer is a MULTI without pipeline (every step is sent as it is built,
// as ioredis's README shows for `multi({ pipeline: false })`), on a connection kept for transfers. A transfer over
// the limit is refused half-way.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
const tx = new Redis(process.env.REDIS_URL); // transactions hold connection state: a connection of their own
const LIMIT = 900;

async function fraudCheck(from, amount) { // the risk service's answer takes ~30 ms
  await new Promise((resolve) => setTimeout(resolve, 30));
  return amount < 5000;
}
const ACCOUNTS = 20;
for (let a = 1; a <= ACCOUNTS; a += 1) await redis.set(`balance:${a}`, 100000);

async function transfer(from, to, amount) {
  await tx.multi({ pipeline: false });
  await tx.decrby(`balance:${from}`, amount);
  await tx.incrby(`balance:${to}`, amount);
  await tx.rpush(`ledger:${from}`, JSON.stringify({ to, amount, at: Date.now() }));
  if (amount > LIMIT || !(await fraudCheck(from, amount))) {
    if (process.env.DISCARD_REFUSED === '1') await tx.discard();
    return false;
  }
  await tx.exec();
  return true;
}

let failed = 0;
for (let n = 1; ; n += 1) {
  const from = 1 + (n % ACCOUNTS);
  const to = 1 + ((n * 7) % ACCOUNTS);
  const amount = n % 12 === 5 ? 1500 : 10 + (n % 50);
  try {
    await transfer(from, to, amount);
  } catch (err) {
    if ((failed += 1) % 20 === 1) console.error(`transfer ${n} failed: ${err.message}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
