"""Where the servers are: URLs and secrets, sandboxes, cluster topology, and the gate before a user's server."""
