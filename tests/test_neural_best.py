"""The estimated best in class of the neural policy classes (``ar_agents.evaluation.neural_best``).

Every value is checked against an independent computation: ``ar_envs.metrics.enumerate_metrics``
of the returned member (it sums over all ``V^H`` sequences of every context, not only the
expert's support that the objective uses), the learner's own enumerated D_H^2, or a realisable
instance whose class minimum is 0. Tiny policies and budgets keep each test to a few seconds.
"""

import math

import numpy as np
import pytest

from ar_agents.algorithms import BC, TeacherlessPolicy
from ar_agents.evaluation.neural_best import NeuralBestSearch, neural_best_in_class
from ar_agents.evaluation.sweep import sweep
from ar_agents.training import build_policy
from ar_envs.metrics import enumerate_metrics
from ar_envs.tasks import LinearAR, Parity, TwoBranch

TINY = dict(hidden=8, window=3, embed_dim=4)
FAST = dict(restarts=1, steps=30, lr=1e-2)


def _learner(task, kind="mlp", args=TINY, epochs=2, seed=0):
    """A BC fit of a tiny neural policy (the learner whose class is searched)."""
    from ar_envs.data import generate

    return BC(policy=kind, policy_args=dict(args), epochs=epochs).fit(task, generate(task, 200, seed=seed), seed)


@pytest.mark.parametrize("task", [TwoBranch(horizon=3), LinearAR(horizon=3), Parity(n_bits=3)],
                         ids=["two-branch", "linear-ar", "parity-deterministic"])
def test_value_is_the_enumerated_hellinger_of_the_member_and_beats_the_learner(task):
    like = _learner(task)
    own = enumerate_metrics(task, like)["hellinger2"]
    r = neural_best_in_class(task, like, **FAST)
    member = r["policy"]
    assert type(member) is type(like) and member.config == like.config and member is not like
    # (a) the reported value is the member's exact D_H^2 (independent enumeration over all V^H)
    assert r["value_exact"] and r["ci95"] is None and r["exact"] is False
    assert r["hellinger2"] == pytest.approx(enumerate_metrics(task, member)["hellinger2"], abs=1e-9)
    # (b) never worse than the member we fitted: the learner's fit is a scored candidate
    untrained = r["candidate_starts"].index("the learner's fit (untrained)")
    assert r["candidates"][untrained] == pytest.approx(own, abs=1e-9)
    assert r["hellinger2"] == min(r["candidates"]) <= own + 1e-12
    assert len(r["candidates"]) == r["restarts"] + 2
    assert r["method"].startswith("estimate: mlp trained on sequence-level D_H^2 (exact enumeration")
    assert "upper bound on the class minimum, so C is a lower estimate" in r["method"]
    # the learner is left as it was
    assert enumerate_metrics(task, like)["hellinger2"] == pytest.approx(own, abs=1e-12)


def test_deterministic_expert_rows_are_one_per_context():
    task = Parity(n_bits=3)
    like = build_policy("mlp", task, TINY, seed=0)
    s = NeuralBestSearch(task, like, **FAST)
    contexts, cprobs = task.enumerate_contexts()
    assert len(s.rows) == len(contexts) == 8 and s.rows.exact
    assert np.array_equal(s.rows.sequences, task.reference(contexts))
    # 2 - 2 E_x sqrt(P(a*(x)|x)) by hand
    p = np.exp(like.sequence_log_prob(contexts, task.reference(contexts)))
    assert s.rows.hellinger2(like) == pytest.approx(2 - 2 * float((cprobs * np.sqrt(p)).sum()), abs=1e-12)


@pytest.mark.parametrize("task", [TwoBranch(horizon=2), LinearAR(horizon=2, misspec=0.0, num_contexts=2)],
                         ids=["two-branch", "linear-ar-misspec0"])
def test_realisable_class_gets_close_to_zero_from_a_poor_start(task):
    # (c) a window MLP that sees the whole prefix contains the expert (up to finite logits);
    # the learner passed is an untrained member, so the restarts and training do the work
    like = build_policy("mlp", task, dict(hidden=16, window=3, embed_dim=8), seed=0)
    start = enumerate_metrics(task, like)["hellinger2"]
    r = neural_best_in_class(task, like, restarts=1, steps=150, lr=1e-2)
    assert start > 0.1
    assert r["hellinger2"] < 2e-3
    assert r["hellinger2"] == pytest.approx(enumerate_metrics(task, r["policy"])["hellinger2"], abs=1e-9)


def test_same_seed_same_numbers():
    task = LinearAR(horizon=3)
    like = _learner(task)
    a = neural_best_in_class(task, like, seed=3, **FAST)
    b = neural_best_in_class(task, like, seed=3, **FAST)
    for k in a:
        if k not in ("policy", "wall_s"):
            assert a[k] == b[k], k
    c = neural_best_in_class(task, like, seed=4, **FAST)
    assert c["candidates"][0] != a["candidates"][0]  # the restarts are the seed's


def test_monte_carlo_value_is_rescored_on_fresh_samples_with_an_interval():
    # force Monte Carlo on an enumerable task: the exact D_H^2 of the chosen member is then known
    task = TwoBranch(horizon=3)
    like = _learner(task)
    own = enumerate_metrics(task, like)["hellinger2"]
    r = neural_best_in_class(task, like, enumerate_limit=4, mc_samples=2000, eval_samples=20_000, **FAST)
    assert not r["value_exact"] and "monte-carlo m=2000" in r["method"]
    lo, hi = r["ci95"]
    exact = enumerate_metrics(task, r["policy"])["hellinger2"]
    assert lo <= r["hellinger2"] <= hi and lo - 1e-12 <= exact <= hi + 1e-12
    assert exact <= own + (hi - lo)  # never worse than the learner's fit, up to estimation error


def test_teacherless_learner_is_searched_in_its_own_law():
    task = TwoBranch(horizon=3)
    like = TeacherlessPolicy(build_policy("mlp", task, TINY, seed=1))
    own = enumerate_metrics(task, like)["hellinger2"]
    r = neural_best_in_class(task, like, **FAST)
    assert isinstance(r["policy"], TeacherlessPolicy) and r["kind"] == "mlp (teacherless decoding)"
    assert r["hellinger2"] == pytest.approx(enumerate_metrics(task, r["policy"])["hellinger2"], abs=1e-9)
    assert r["hellinger2"] <= own + 1e-12
    # the product law cannot tie a_2 to a_1: its class minimum is bounded away from 0 (the
    # best product law of two-branch has D_H^2 > 0), unlike the autoregressive class's
    assert r["hellinger2"] > 1e-3


def test_given_starts_are_trained_candidates():
    task = TwoBranch(horizon=3)
    like = build_policy("mlp", task, TINY, seed=0)
    other = _learner(task)
    r = neural_best_in_class(task, like, starts=[other], **FAST)
    assert r["candidate_starts"][-1] == "starts[0], trained" and "1 given start(s)" in r["method"]
    assert r["hellinger2"] <= enumerate_metrics(task, other)["hellinger2"] + 1e-12


def test_sweep_cell_with_a_neural_bc_gets_an_estimated_approx_factor(tmp_path, monkeypatch):
    import ar_agents.evaluation.sweep as sw
    from ar_envs.data import generate

    monkeypatch.setattr(sw, "NEURAL_BEST_OPTIONS", dict(FAST))
    monkeypatch.setattr(sw, "_NEURAL_BEST_CACHE", {})
    bc = BC(policy="mlp", policy_args=dict(TINY), epochs=2)
    recs = sweep("two-branch", [2, 3], [bc], seeds=2, n_samples=100, eval_samples=200, out=tmp_path / "r.jsonl",
                 progress=False)
    assert len(recs) == 4 and len(sw._NEURAL_BEST_CACHE) == 2  # one search per horizon, shared by the seeds
    for r in recs:
        assert r["best_in_class_method"].startswith("estimate: mlp trained on sequence-level D_H^2")
        assert r["best_in_class_exact"] is False and r["best_in_class_ci95"] is None
        b = r["best_in_class_hellinger2"]
        assert 0 < b <= r["hellinger2"] + 1e-12  # both exact here: the learner's fit is a candidate
        assert r["approx_factor"] == pytest.approx(r["hellinger2"] / b) and r["approx_factor"] >= 1 - 1e-9
        assert r["best_in_class_search"]["value_exact"] is True
    # the record's number is the function's on the same learner (refitted: same seed, same weights)
    task = TwoBranch(horizon=3)
    learner = bc.fit(task, generate(task, 100, seed=1), 1)
    direct = neural_best_in_class(task, learner, **FAST)
    rec = next(r for r in recs if r["horizon"] == 3 and r["seed"] == 1)
    assert rec["best_in_class_hellinger2"] == direct["hellinger2"]
    assert rec["best_in_class_search"]["candidates"] == direct["candidates"]


def test_bad_arguments_name_the_argument():
    task = TwoBranch(horizon=3)
    like = build_policy("mlp", task, TINY, seed=0)
    for name, bad in [("restarts", -1), ("steps", 0), ("lr", 0.0), ("lr", math.nan), ("batch_size", 0),
                      ("seed", -1), ("mc_samples", 1), ("eval_samples", 1), ("enumerate_limit", 0),
                      ("torch_threads", 0)]:
        with pytest.raises(ValueError, match=name):
            neural_best_in_class(task, like, **{name: bad})
    with pytest.raises(TypeError, match="like must be a TokenPolicy"):
        neural_best_in_class(task, "mlp")
    with pytest.raises(ValueError, match="like was built for another stream"):
        neural_best_in_class(TwoBranch(horizon=4), like)
    with pytest.raises(ValueError, match=r"starts\[0\] must be a mlp policy"):
        neural_best_in_class(task, like, starts=[build_policy("mlp", task, dict(TINY, hidden=9), seed=0)], **FAST)
    with pytest.raises(TypeError, match="starts must be a list"):
        neural_best_in_class(task, like, starts=like, **FAST)
