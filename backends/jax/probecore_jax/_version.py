"""Version of the probecore-jax distribution."""

__version__ = "0.1.0.dev0"
