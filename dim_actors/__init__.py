"""dim-desktop: a multiprocess actor client for the Diminuendo agent gateway."""

__version__ = "0.1.0"
