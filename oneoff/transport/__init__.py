"""SSH transport: connections, host-key checks and remote execution."""
