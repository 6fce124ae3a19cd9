// The back-office app: shares the customer site's sessions (same cookie, same secret, same Redis).
import express from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';
import { createClient } from 'redis';

const redisClient = createClient({ url: process.env.REDIS_URL });
redisClient.connect().catch(console.error);

const app = express();
app.use(session({
  store: new RedisStore({ client: redisClient, ...(process.env.SESSION_PREFIX ? { prefix: process.env.SESSION_PREFIX } : {}) }),
  name: 'sid',
  resave: false,
  saveUninitialized: false,
  secret: 'keyboard cat',
  cookie: { maxAge: 10 * 60 * 1000 },
}));

app.get('/orders', (req, res) => {
  if (!req.session.user) return res.sendStatus(401);
  res.json({ user: req.session.user, orders: [] });
});
app.listen(Number(process.env.ADMIN_PORT));
