// Server-side rendered pages cached for an hour (cache-manager + @keyv/redis): big values, many of them.
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import KeyvRedis from '@keyv/redis';

const cache = createCache({ stores: [new Keyv({ store: new KeyvRedis(process.env.REDIS_URL) })] });
const filler = 'x'.repeat(Number(process.env.PAGE_BYTES || 40000));
let page = 0;

setInterval(() => {
  page += 1;
  const path = `/products/${page}`;
  cache.wrap(`page:${path}`, async () => `<html><body>${path}${filler}</body></html>`, 60 * 60 * 1000)
    .catch((err) => console.error(err.message));
}, 20);
