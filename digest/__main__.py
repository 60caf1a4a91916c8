"""``python -m digest``: the same command line as ``digest`` (how `digest send --workers` starts its helpers)."""

from .cli import run

if __name__ == "__main__":
    run()
