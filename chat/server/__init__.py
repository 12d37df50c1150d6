"""The process around the app: graceful shutdown, health checks, maintenance sweeps."""
