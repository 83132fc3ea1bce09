"""CryWatch: a real-time neonatal cry monitor."""

__version__ = "0.1.0"
