"""Which process is behind a Redis connection, and how its owner knows it (PM2, systemd, containers)."""
