"""The client side of runs: one session per host, the fleet around them, the local journal."""
