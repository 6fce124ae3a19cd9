// The customer site: express-session with connect-redis (node-redis client), as in connect-redis's README.
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

app.post('/login', (req, res) => {
  req.session.user = req.query.user;
  req.session.cart = [];
  res.send('welcome');
});
app.post('/cart', (req, res) => {
  if (!req.session.user) return res.sendStatus(401);
  req.session.cart.push(req.query.sku);
  res.json(req.session.cart);
});
app.get('/me', (req, res) => (req.session.user ? res.json({ user: req.session.user }) : res.sendStatus(401)));
app.listen(Number(process.env.PORT));
