// Shoppers: log in on the site, fill a cart, look at their orders in the back office (when ADMIN_PORT is set).
const site = `http://127.0.0.1:${process.env.PORT}`;
const admin = process.env.ADMIN_PORT ? `http://127.0.0.1:${process.env.ADMIN_PORT}` : null;
let shopper = 0;
let refused = 0;

async function visit(n) {
  const login = await fetch(`${site}/login?user=shopper${n}`, { method: 'POST' });
  const cookie = (login.headers.get('set-cookie') || '').split(';')[0];
  for (let step = 0; step < 10; step += 1) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    await fetch(`${site}/cart?sku=sku-${step}`, { method: 'POST', headers: { cookie } });
    await fetch(`${site}/me`, { headers: { cookie } });
    if (admin) {
      const res = await fetch(`${admin}/orders`, { headers: { cookie } });
      if (res.status === 401 && (refused += 1) % 10 === 1) console.warn(`back office refused shopper${n}`);
    }
  }
}

setInterval(() => { shopper += 1; visit(shopper).catch((err) => console.error(err.message)); }, 300);
