"""SocialPulse shared package: settings, table contracts, store clients, embedded services and the CLI.

Serving imports only this package (never `assets` or `orchestration`).
"""

__version__ = "0.1.0"
