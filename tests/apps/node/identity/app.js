// A small app for redisprobe's process-identity tests: one named node-redis connection that writes its own key.
const { createClient } = require("redis");

const tag = `${process.env.APP_TAG || "app"}:${process.pid}`;
const client = createClient({ url: process.env.REDIS_URL, name: `ident-${process.env.APP_TAG || "app"}` });
client.on("error", () => {});
client.connect().then(() => {
  setInterval(() => { client.set(`ident:${tag}`, "1", { PX: 2000 }).catch(() => {}); }, 150);
});
