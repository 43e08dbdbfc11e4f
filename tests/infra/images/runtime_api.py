"""The Runtime API the image tests drive the entry point with: the local cloud's own (trainer.local)."""

from trainer.local.runtime_api import Outcome, RuntimeAPI

__all__ = ["Outcome", "RuntimeAPI"]
