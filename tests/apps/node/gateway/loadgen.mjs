// API clients: each new client searches once, then pulls exports every 300 ms for a few seconds.
const base = `http://127.0.0.1:${process.env.PORT}`;
let client = 0;
async function session(user) {
  await fetch(`${base}/search?q=shoes`, { headers: { 'x-user': user } });
  for (let i = 0; i < 10; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await fetch(`${base}/export`, { headers: { 'x-user': user } });
  }
}
setInterval(() => { client += 1; session(`client${client}`).catch((err) => console.error(err.message)); }, 400);
