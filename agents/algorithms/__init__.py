"""Imitation algorithms, one per file; ``get_algorithm`` finds them by name or import path."""

from .base import Algorithm, FunctionAlgorithm, algorithm_names, get_algorithm
from .bc import BC
from .hellinger_bc import HellingerBC
from .rho import RhoEstimator, rho_select
from .smoothed_bc import SmoothedBC

__all__ = ["Algorithm", "FunctionAlgorithm", "algorithm_names", "get_algorithm", "BC", "SmoothedBC", "HellingerBC",
           "RhoEstimator", "rho_select"]
