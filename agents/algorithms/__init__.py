"""Imitation algorithms, one per file; ``get_algorithm`` finds them by name or import path."""

from .base import Algorithm, FunctionAlgorithm, algorithm_names, get_algorithm
from .bc import BC
from .dagger import BetaSchedule, DAgger, dagger_with_env
from .block_hellinger import BlockHellinger
from .hellinger_bc import HellingerBC, HellingerBCOracle
from .ppo import PPO, PPOFromBC
from .rho import RhoEstimator, rho_select
from .scheduled_sampling import ScheduledSampling
from .smoothed_bc import SmoothedBC
from .teacherless import Teacherless, TeacherlessPolicy

__all__ = ["Algorithm", "FunctionAlgorithm", "algorithm_names", "get_algorithm", "BC", "SmoothedBC", "HellingerBC", "HellingerBCOracle", "BlockHellinger",
           "RhoEstimator", "rho_select", "DAgger", "BetaSchedule", "dagger_with_env", "ScheduledSampling",
           "Teacherless", "TeacherlessPolicy", "PPO", "PPOFromBC"]
