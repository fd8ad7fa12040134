"""Teacherless training scores what its decoder decodes, and examples/teacherless_sweep.py (its
interval, its verdict, its --quick run, its input checks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ar_agents.algorithms import Teacherless
from ar_agents.policies import make_policy
from ar_envs.data import generate
from ar_envs.tasks import PathStar
from examples import teacherless_sweep as sweep


# ------------------------------------------------------------------ training stream = decoding stream
def test_teacherless_training_loss_is_the_log_loss_of_the_decoded_law_on_dummy_inputs():
    """With a learning rate too small to move the weights, the epoch's training loss must equal
    (a) the mean per-token log loss of the returned policy's sequence law (what it decodes), and
    (b) the cross-entropy computed here by hand from the stream [BOS] + prompt + (H-1) x DUMMY read
    off the logits at the H answer positions. A model trained on one input and decoded on another
    (answer tokens instead of dummies, a shifted window, a different dummy count) fails (a) or (b)."""
    task = PathStar(degree=2, path_length=4, num_nodes=8)
    demos = generate(task, 32, seed=5)
    start = make_policy("transformer", task, seed=1, n_layer=1, n_embd=16, n_head=2)
    with torch.no_grad():  # large random weights: the logits depend strongly on the input stream
        gen = torch.Generator().manual_seed(2)
        for p in start.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    alg = Teacherless(policy=start, epochs=1, lr=1e-12, batch_size=32)  # one minibatch: the loss at `start`
    policy = alg.fit(task, demos, seed=1)
    H, L = task.horizon, task.context_length
    decoded = -policy.sequence_log_prob(demos.contexts, demos.sequences).mean() / H
    assert alg.log["final_loss"] == pytest.approx(decoded, rel=1e-5)

    model = policy.model
    spec = model.spec
    ids = np.concatenate([np.full((32, 1), spec["bos"]), demos.contexts, np.full((32, H - 1), spec["dummy"])], axis=1)
    assert ids.shape[1] == 1 + L + H - 1
    with torch.no_grad():
        logits = model(torch.as_tensor(ids))[:, L : L + H, :].double()  # position L + h predicts answer token h + 1
    logp = torch.log_softmax(logits, dim=-1).numpy()
    by_hand = -np.take_along_axis(logp, demos.sequences[:, :, None], axis=-1).mean()
    assert alg.log["final_loss"] == pytest.approx(by_hand, rel=1e-5)
    # and the parallel argmax is what greedy decoding returns
    assert np.array_equal(policy.greedy(demos.contexts), logp.argmax(-1))


# ------------------------------------------------------------------ the sweep's statistics
def test_seed_interval_is_the_student_t_interval_clipped_to_the_unit_interval():
    mean, low, high = sweep.seed_interval([0.2, 0.4, 0.6])  # mean 0.4, sd 0.2, t_{0.975, 2} = 4.303
    half = 4.303 * 0.2 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((0.4, 0.0, 0.4 + half))  # 0.4 - 0.497 clipped to 0
    assert sweep.seed_interval([0.9, 0.9, 0.9]) == pytest.approx((0.9, 0.9, 0.9))
    m, lo, hi = sweep.seed_interval([0.5, 0.7])  # t_{0.975, 1} = 12.706: clipped on both sides
    assert (m, lo, hi) == pytest.approx((0.6, 0.0, 1.0))
    assert sweep.seed_interval([0.3]) == (0.3, 0.0, 1.0)  # one seed: no spread known


def test_verdict_needs_disjoint_intervals():
    assert sweep.verdict((0.5, 0.45, 0.55), (0.9, 0.8, 1.0)) == "TL > TF"
    assert sweep.verdict((0.9, 0.8, 1.0), (0.5, 0.45, 0.55)) == "TF > TL"
    assert sweep.verdict((0.5, 0.4, 0.8), (0.9, 0.7, 1.0)) == "overlap"


# ------------------------------------------------------------------ the script
def test_quick_sweep_runs_and_is_reproducible(capsys):
    summary = sweep.main(["--quick", "--only", "quick-l3"])
    out = capsys.readouterr().out
    assert "TF exact" in out and "-" * 40 in out and "quick-l3" in out
    s = summary["quick-l3"]
    assert set(s["per_seed"]) == {"tf", "tl"} and all(len(v) == 2 for v in s["per_seed"].values())
    for m in ("tf", "tl"):
        mean, low, high = s["exact"][m]
        assert 0.0 <= low <= mean <= high <= 1.0
        assert mean == pytest.approx(np.mean(s["per_seed"][m]))
    # one run again: same seed, same numbers
    job = ("quick-l3", sweep.parse_args(["--quick"]).settings["quick-l3"], "tl", 1, 50)
    a, b = sweep.run_one(job), sweep.run_one(job)
    assert a["exact"] == b["exact"] == s["per_seed"]["tl"][1] and a["final_loss"] == b["final_loss"]


@pytest.mark.parametrize("args,name", [(["--only", "nope"], "--only"), (["--seeds", "0"], "--seeds"),
                                       (["--workers", "0"], "--workers"), (["--eval-samples", "0"], "--eval-samples")])
def test_bad_input_names_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        sweep.parse_args(["--quick", *args])
