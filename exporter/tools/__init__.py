"""Tools beside the daemon: the monthly review and the engine simulator."""
