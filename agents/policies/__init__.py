"""Policy classes."""

from .loglinear import LogLinearPolicy

__all__ = ["LogLinearPolicy"]
