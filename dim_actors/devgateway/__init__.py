"""A faithful development implementation of the Diminuendo v1 gateway (see
docs/dev-gateway.md)."""

from .cli import main
from .runner import BackgroundGateway
from .server import DEV_IDENTITY, DevGateway

__all__ = ["DevGateway", "BackgroundGateway", "DEV_IDENTITY", "main"]
