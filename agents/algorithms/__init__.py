"""Imitation algorithms, one per file; ``get_algorithm`` finds them by name or import path."""

from ar_agents.algorithms.base import Algorithm, FunctionAlgorithm, algorithm_names, get_algorithm
from ar_agents.algorithms.bc import BC
from ar_agents.algorithms.dagger import BetaSchedule, DAgger, dagger_with_env
from ar_agents.algorithms.block_hellinger import BlockHellinger
from ar_agents.algorithms.hellinger_bc import HellingerBC, HellingerBCOracle
from ar_agents.algorithms.ppo import PPO, PPOFromBC
from ar_agents.algorithms.rho import RhoEstimator, rho_select
from ar_agents.algorithms.scheduled_sampling import ScheduledSampling
from ar_agents.algorithms.smoothed_bc import SmoothedBC
from ar_agents.algorithms.teacherless import Teacherless, TeacherlessPolicy

__all__ = ["Algorithm", "FunctionAlgorithm", "algorithm_names", "get_algorithm", "BC", "SmoothedBC", "HellingerBC", "HellingerBCOracle", "BlockHellinger",
           "RhoEstimator", "rho_select", "DAgger", "BetaSchedule", "dagger_with_env", "ScheduledSampling",
           "Teacherless", "TeacherlessPolicy", "PPO", "PPOFromBC"]
