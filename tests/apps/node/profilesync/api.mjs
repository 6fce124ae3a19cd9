// The login service (node-redis): caches the user's profile for 3 s at login and notes who logged in recently.
import { createClient } from 'redis';

const client = createClient({ url: process.env.REDIS_URL });
client.on('error', (err) => console.error('redis', err.message));
await client.connect();
let user = 0;
setInterval(async () => {
  user += 1;
  await client.set(`user:${user}:profile`, JSON.stringify({ id: user, name: `user ${user}`, lastSeen: null }),
    { EX: 3 });
  await client.lPush('users:recent', String(user));
  await client.lTrim('users:recent', 0, 9);
}, 200);
