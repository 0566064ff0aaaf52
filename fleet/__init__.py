"""certfleet's engine: inventory, transports, plans and the fleet runner. Never prints."""

__version__ = "0.1.0"
