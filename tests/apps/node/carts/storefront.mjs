// The storefront (ioredis): shopping carts as hashes cart:<id>; shoppers add items to their cart.
import Redis from 'ioredis';

const redis = new Redis(process.env.REDIS_URL);
const CARTS = 60;
for (let id = 1; id <= CARTS; id += 1) {
  await redis.hset(`cart:${id}`, { 'sku-1': 1, owner: `shopper${id}` });
  await redis.expire(`cart:${id}`, 3600);
}
// Shoppers come back to their carts in turn: every cart is read within 3.6 s (a random pick could miss the few
// renamed during a capture).
let turn = 0;
setInterval(async () => {
  const id = 1 + (turn++ % CARTS);
  const cart = await redis.hgetall(`cart:${id}`);
  if (!cart.owner) console.warn(`cart ${id} is empty`);
  await redis.hincrby(`cart:${id}`, `sku-${id % 5}`, 1);
}, 60);
