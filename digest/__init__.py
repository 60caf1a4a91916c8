"""digest: compose and send newsroom email digests."""

__version__ = "0.1.0"
