"""erasekit: remove a concept from a text-to-image diffusion model, and prove it did."""

__version__ = "0.1.0"
