"""The daemon: assembly from configuration, the collection loop, HTTP, landing page, demo."""
