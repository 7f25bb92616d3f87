"""What the services' ports raise: the exceptions a service catches from an adapter it is given.

The ports themselves (``Protocol``s) sit beside the service that uses them; the data they exchange is in
the domain (``domain/activity.py``, ``domain/metering.py``, ``domain/lifecycle.py``), and so are the
errors that state a business rule (``TenancyError`` and its kinds, ``TokenAlreadyUsed``,
``RegistrationClosed``). Adapters import this module and nothing else of the services layer (the import
contract in pyproject.toml holds them to it).
"""

from __future__ import annotations


class MarketplaceUnavailable(Exception):
    """Marketplace did not answer usefully now (throttled, 5xx, unreachable); trying later may work."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"{operation}: AWS Marketplace unavailable ({code})")
        self.code = code


class InvalidRegistrationToken(Exception):
    """Marketplace did not issue this token (or it is malformed)."""


class ExpiredRegistrationToken(Exception):
    """The token was issued but has expired."""
