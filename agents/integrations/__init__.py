"""Integrations: the token policies and the expert as Stable-Baselines3 policies, a native SB3
vector env, and trajectories for the ``imitation`` library."""
