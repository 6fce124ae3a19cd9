// Browsers hitting the tracking endpoint.
const pages = ['/', '/pricing', '/docs', '/blog', '/signup'];
setInterval(() => {
  const page = pages[Math.floor(Math.random() * pages.length)];
  fetch(`http://127.0.0.1:${process.env.PORT}/track`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ page }),
  }).catch((err) => console.error('track', err.message));
}, 30);
