// The product catalog: product lookups cached with cache-manager on a Keyv Redis store (@keyv/redis).
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import KeyvRedis from '@keyv/redis';

const cache = createCache({ stores: [new Keyv({ store: new KeyvRedis(process.env.REDIS_URL) })] });
const PRODUCT_TTL = Number(process.env.PRODUCT_TTL); // the ttl cache-manager is given for product entries

async function loadProductFromDatabase(id) {
  await new Promise((resolve) => setTimeout(resolve, 15));
  return { id, name: `product ${id}`, price: 10 + (id % 17), stock: 100 - (id % 9) };
}

function getProduct(id) {
  return cache.wrap(`product:${id}`, () => loadProductFromDatabase(id), PRODUCT_TTL);
}

setInterval(() => {
  const id = 1 + Math.floor(Math.random() * 40);
  getProduct(id).catch((err) => console.error(err.message));
}, 50);
