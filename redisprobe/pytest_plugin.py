"""pytest plugin: collects redisprobe scenario files as test items and offers a sandbox fixture."""
