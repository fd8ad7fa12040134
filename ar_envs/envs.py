"""Environment classes for the registered ids (string entry points ``ar_envs.envs:<Name>Env``)."""

from .env import make_env_classes
from .tasks import LinearAR, MixtureTeacher, TwoBranch, TwoBranchLinear
from .tasks.path_star import PathStar
from .tasks.multiplication import Multiplication
from .tasks.parity import Parity
from .tasks.hmm import HMMLanguage
from .tasks.rare_token import RareToken

TwoBranchEnv, TwoBranchVectorEnv = make_env_classes(TwoBranch)
TwoBranchLinearEnv, TwoBranchLinearVectorEnv = make_env_classes(TwoBranchLinear)
MixtureTeacherEnv, MixtureTeacherVectorEnv = make_env_classes(MixtureTeacher)
LinearAREnv, LinearARVectorEnv = make_env_classes(LinearAR)
PathStarEnv, PathStarVectorEnv = make_env_classes(PathStar)
MultiplicationEnv, MultiplicationVectorEnv = make_env_classes(Multiplication)
ParityEnv, ParityVectorEnv = make_env_classes(Parity)
HMMLanguageEnv, HMMLanguageVectorEnv = make_env_classes(HMMLanguage)
RareTokenEnv, RareTokenVectorEnv = make_env_classes(RareToken)

# env id (without the "ar_envs/" namespace) -> class name prefix in this module
ENV_IDS = {
    "TwoBranch-v0": "TwoBranch",
    "TwoBranchLinear-v0": "TwoBranchLinear",
    "MixtureTeacher-v0": "MixtureTeacher",
    "LinearAR-v0": "LinearAR",
    "PathStar-v0": "PathStar",
    "Multiplication-v0": "Multiplication",
    "Parity-v0": "Parity",
    "HMMLanguage-v0": "HMMLanguage",
    "RareToken-v0": "RareToken",
}
