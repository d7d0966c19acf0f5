"""mdpipe: capture every market-data message of a venue, deduplicate redundant copies, load exactly once."""

__version__ = "0.1.0"
