"""An estimated best in class for the neural policy classes: the same architecture trained on
the sequence-level squared Hellinger distance to the expert.

The approximation factor ``C(H) = D_H^2(learner, P*) / min_{pi in class} D_H^2(pi, P*)`` needs the
class minimum. For a transformer or a window MLP there is no closed form and no convex
programme, so this module *estimates* it: members of the learner's own class (same kind, same
configuration, same task stream) are trained by Adam directly on::

    D_H^2(P_theta, P*) = 2 - 2 sum_x D(x) sum_a sqrt(P*(a|x) P_theta(a|x))

i.e. on ``-log A(theta)`` with the Hellinger affinity ``A = sum_i w_i exp(0.5 (log P_theta(a_i|x_i)
- log P*(a_i|x_i)))`` over rows ``(x_i, a_i)`` with weights ``w_i``:

* **exact enumeration** (``contexts x V^H <= enumerate_limit``, default ``2^16``): every
  ``(x, a)`` with ``P*(a|x) > 0``, ``w = D(x) P*(a|x)``. Deterministic experts (path-star,
  multiplication, parity) have one row per context, ``a = a*(x)``, ``w = D(x)``, so
  ``D_H^2 = 2 - 2 E_x sqrt(P_theta(a*(x)|x))``.
* **Monte Carlo** otherwise: ``m = mc_samples`` fixed expert samples, ``w = 1/m``.

``log P_theta`` is the teacher-forced log-probability of the answer (``answer_logits``, one pass
with gradients). A learner decoded teacherlessly (:class:`~ar_agents.algorithms.teacherless.TeacherlessPolicy`)
has another sequence law, the product of the per-position distributions of the teacherless
stream; its class is *that* law over the same architecture, and it is what is trained and scored.

When the rows fit in one batch (``<= batch_size``) each step is the exact objective's gradient
and the best iterate is kept. Otherwise each step draws ``batch_size`` rows with probability
``w_i`` (with replacement; uniform for Monte Carlo) and descends ``-log`` of the batch mean of
``sqrt(P_theta / P*)``: a self-normalised estimate whose gradient is biased by ``O(1 / batch_size)``
(a log of a mean); the selection and the reported value below do not use it.

Candidates: ``restarts`` fresh random initialisations (seeds derived from ``seed``; each first
gets ``steps // 2`` steps on the weighted log loss ``-sum_i w_i log P_theta(a_i|x_i)``, whose
gradient, unlike the affinity's, does not vanish on a branch the member gives almost no mass),
the learner's own fitted weights (``like``: scored as it is and after training from it) and any
``starts`` given (trained from). Training runs in evaluation mode (no dropout: the class's law
is the module's evaluation-mode law), Adam at ``lr`` cosine-decayed to ``lr / 20``, on
``torch_threads`` threads (fixed, so that same seed gives same numbers: the float reductions
depend on the thread count). Defaults: 2 restarts, 80 steps, ``lr = 3e-3``, batches of 256,
``m = 8192``.

Every candidate is scored on its D_H^2: exactly for an enumerable objective; on a second,
independent set of ``m`` expert samples for Monte Carlo (so the choice is not made on the
optimised, optimistically biased number). The minimum is kept and reported: exactly, or
re-scored on a third set of fresh expert samples (``eval_samples``) with its 95% interval
(``ar_envs.metrics.monte_carlo_metrics`` restricted to Hellinger: the regret's policy samples
are not needed here).

What the number is: **an upper bound on the class minimum, as found by this optimiser from
these starts** (up to Monte-Carlo error when ``value_exact`` is false). So ``C = error / best``
computed with it is a *lower* estimate of the true approximation factor. Because the learner's
fit is a candidate, the value is never worse than the learner's own D_H^2 (up to estimation
error).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from ar_envs.core import Task, check_float, check_int
from ar_envs.metrics import all_sequences, can_enumerate, monte_carlo_metrics

from ar_agents.evaluation.progress import report

ENUMERATE_LIMIT = 2**16
DEFAULT_RESTARTS = 2
DEFAULT_STEPS = 80
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 256
DEFAULT_MC_SAMPLES = 8192
DEFAULT_EVAL_SAMPLES = 20_000

# seed offsets of the independent random streams (training set, selection set, final re-score)
_TRAIN_SET, _SELECT_SET, _EVAL_SET = 7919, 15485863, 104729


# --------------------------------------------------------------------------------------------
# the class: a TokenPolicy, or one decoded teacherlessly
# --------------------------------------------------------------------------------------------


def _unwrap(policy, name: str):
    """``(TokenPolicy, teacherless: bool)`` of a neural policy of this package, else ``TypeError``."""
    from ar_agents.algorithms.teacherless import TeacherlessPolicy
    from ar_agents.policies.base import TokenPolicy

    if isinstance(policy, TeacherlessPolicy):
        return policy.model, True
    if isinstance(policy, TokenPolicy):
        return policy, False
    raise TypeError(f"{name} must be a TokenPolicy or a TeacherlessPolicy (a neural policy of ar_agents.policies), "
                    f"got {type(policy).__name__}")


def _law(model, teacherless: bool):
    """The policy whose sequence law is the member's (what is scored and returned)."""
    from ar_agents.algorithms.teacherless import TeacherlessPolicy

    return TeacherlessPolicy(model) if teacherless else model


def _log_q(model, teacherless: bool, contexts, sequences) -> torch.Tensor:
    """``log P_theta(a | x)`` ``(n,)`` in float64, differentiable (the module's current mode)."""
    logits = model.teacherless_logits(contexts) if teacherless else model.answer_logits(contexts, sequences)
    logp = torch.log_softmax(logits.double(), dim=-1)
    tgt = torch.as_tensor(np.asarray(sequences), dtype=torch.long, device=logp.device)
    return logp.gather(-1, tgt[..., None])[..., 0].sum(dim=1)


# --------------------------------------------------------------------------------------------
# the objective's rows
# --------------------------------------------------------------------------------------------


class _Rows:
    """Rows ``(x_i, a_i)`` with ``log P*(a_i|x_i)`` and log weights; ``A = sum w_i sqrt(Q_i / P*_i)``."""

    def __init__(self, contexts, sequences, expert_logp, log_w, exact: bool, label: str):
        self.contexts = np.asarray(contexts)
        self.sequences = np.asarray(sequences, dtype=np.int64)
        self.expert_logp = np.asarray(expert_logp, dtype=np.float64)
        self.log_w = np.asarray(log_w, dtype=np.float64)
        self.exact, self.label = exact, label
        if not np.all(np.isfinite(self.expert_logp)):
            raise FloatingPointError("the expert gives probability 0 to a row of the objective; this is a bug")
        p = np.exp(self.log_w - self.log_w.max())
        self.probs = p / p.sum()  # minibatch sampling law (proportional to w)

    def __len__(self):
        return len(self.sequences)

    def hellinger2(self, law) -> float:
        """``2 - 2 sum_i w_i sqrt(Q_i / P*_i)`` of a policy (no gradients, float64)."""
        lq = np.asarray(law.sequence_log_prob(self.contexts, self.sequences), dtype=np.float64)
        terms = self.log_w + 0.5 * (lq - self.expert_logp)
        if np.any(np.isnan(terms)):
            return math.inf  # a diverged member: never chosen
        top = terms.max()
        return 2.0 - 2.0 * math.exp(top) * float(np.exp(terms - top).sum()) if np.isfinite(top) else 2.0


def _exact_rows(task: Task, limit: int) -> _Rows | None:
    """Every ``(x, a)`` with ``P*(a|x) > 0`` and ``w = D(x) P*(a|x)``, or ``None`` if too many."""
    ctx = task.enumerate_contexts()
    if ctx is None:
        return None
    contexts, cprobs = np.asarray(ctx[0]), np.asarray(ctx[1], dtype=np.float64)
    keep = cprobs > 0
    contexts, cprobs = contexts[keep], cprobs[keep]
    if task.deterministic_expert and callable(getattr(task, "reference", None)):
        if len(contexts) > limit:
            return None
        seq = np.asarray(task.reference(contexts), dtype=np.int64)
        lp = task.expert_log_prob(contexts, seq)
        return _Rows(contexts, seq, lp, np.log(cprobs), True, f"exact enumeration of {len(contexts)} contexts")
    if not can_enumerate(task, limit):
        return None
    seqs = all_sequences(task.vocab_size, task.horizon)
    c_all = np.repeat(contexts, len(seqs), axis=0)
    s_all = np.tile(seqs, (len(contexts), 1))
    lp = task.expert_log_prob(c_all, s_all)
    ok = np.isfinite(lp)
    log_w = np.repeat(np.log(cprobs), len(seqs))[ok] + lp[ok]
    return _Rows(c_all[ok], s_all[ok], lp[ok], log_w, True, f"exact enumeration, {int(ok.sum())} sequences")


def _sample_rows(task: Task, m: int, seed: int) -> _Rows:
    contexts, sequences = task.sample_expert(m, np.random.default_rng(seed))
    lp = task.expert_log_prob(contexts, sequences)
    return _Rows(contexts, sequences, lp, np.full(m, -math.log(m)), False, f"monte-carlo m={m}")


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------


class NeuralBestSearch:
    """The search for one (task, architecture): the objective, the selection set and the
    fresh-restart candidates are built once (the restarts lazily, then memoised);
    :meth:`best` adds a learner's fit (and any other starts) and returns the result dict of
    :func:`neural_best_in_class`. The sweep keeps one per (task, horizon, architecture)."""

    def __init__(self, task: Task, like, *, restarts: int = DEFAULT_RESTARTS, steps: int = DEFAULT_STEPS,
                 lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                 mc_samples: int = DEFAULT_MC_SAMPLES, eval_samples: int = DEFAULT_EVAL_SAMPLES,
                 enumerate_limit: int = ENUMERATE_LIMIT, torch_threads: int | None = 1):
        from ar_agents.policies.base import stream_spec
        from ar_agents.training import policy_kind

        if not isinstance(task, Task):
            raise TypeError(f"task must be an ar_envs Task, got {type(task).__name__}")
        self.restarts = check_int("restarts", restarts, 0)
        self.steps = check_int("steps", steps, 1)
        self.lr = check_float("lr", lr, 0.0, low_open=True)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0, 2**31 - 1)
        self.mc_samples = check_int("mc_samples", mc_samples, 2)
        self.eval_samples = check_int("eval_samples", eval_samples, 2)
        self.enumerate_limit = check_int("enumerate_limit", enumerate_limit, 1)
        self.torch_threads = None if torch_threads is None else check_int("torch_threads", torch_threads, 1)
        model, self.teacherless = _unwrap(like, "like")
        if model.spec != stream_spec(task):
            raise ValueError(f"like was built for another stream ({model.spec}); this task needs {stream_spec(task)}")
        self.task = task
        self.model_class = type(model)
        self.spec = dict(model.spec)
        self.kind = policy_kind(model)
        self.config = dict(model.config)
        rows = _exact_rows(task, self.enumerate_limit)
        if rows is None:
            rows = _sample_rows(task, self.mc_samples, self.seed + _TRAIN_SET)
            self.select_rows = _sample_rows(task, self.mc_samples, self.seed + _SELECT_SET)
        else:
            self.select_rows = rows
        self.rows = rows
        self._restart_candidates: list | None = None

    # ------------------------------------------------------------------ members
    def _check_member(self, policy, name: str):
        model, _ = _unwrap(policy, name)
        if type(model) is not self.model_class or model.config != self.config or model.spec != self.spec:
            raise ValueError(f"{name} must be a {self.kind} policy with config {self.config} for this task's stream, "
                             f"got {type(model).__name__} with config {model.config}")
        return copy.deepcopy(model)

    def _fresh(self, seed: int):
        """A new member of the class with reproducible initial weights."""
        from ar_agents.policies import POLICY_KINDS
        from ar_agents.training import build_policy

        if self.kind in POLICY_KINDS:
            return build_policy(self.kind, self.task, self.config, seed=seed)
        with torch.random.fork_rng(devices=[]):  # a TokenPolicy subclass of the user's
            torch.manual_seed(seed)
            return self.model_class(self.spec, **self.config)

    def _train(self, model, stream: int, warmup: int = 0):
        """Adam from ``model``'s weights (changed in place; returned): ``warmup`` steps on the
        weighted log loss ``-sum_i w_i log P_theta(a_i|x_i)`` (forward KL to the expert, whose
        gradient does not vanish where the member gives a branch almost no mass, as the
        Hellinger affinity's does), then ``steps`` steps on ``-log A``."""
        rows = self.rows
        rng = np.random.default_rng([self.seed, stream])
        full = len(rows) <= self.batch_size
        model.eval()  # the class's law is its evaluation-mode law (no dropout)
        total = warmup + self.steps
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.05 * self.lr)
        best_loss, best_state = math.inf, None
        for step in range(total):
            report("best-in-class step", step + 1, total)
            idx = slice(None) if full else rng.choice(len(rows), size=self.batch_size, p=rows.probs)
            lq = _log_q(model, self.teacherless, rows.contexts[idx], rows.sequences[idx])
            half = 0.5 * (lq - torch.as_tensor(rows.expert_logp[idx]))
            if full:  # the exact objective: weights w_i
                w = torch.as_tensor(rows.log_w)
                loss = -(torch.exp(w) * lq).sum() if step < warmup else -torch.logsumexp(w + half, dim=0)
            else:  # rows drawn with probability w_i: equal weights in the batch
                loss = -lq.mean() if step < warmup else -(torch.logsumexp(half, dim=0) - math.log(self.batch_size))
            value = float(loss.detach())
            if not math.isfinite(value):
                break  # keep the best iterate (full batch) or the last finite weights
            if full and step >= warmup and value < best_loss:  # the exact objective at the current weights
                best_loss, best_state = value, {k: v.detach().clone() for k, v in model.state_dict().items()}
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if full and best_state is not None:
            final = self.rows.hellinger2(_law(model, self.teacherless))
            if not (math.isfinite(final) and final <= 2.0 - 2.0 * math.exp(-best_loss)):
                model.load_state_dict(best_state)
        return model

    def _candidate(self, label: str, model) -> dict:
        score = self.select_rows.hellinger2(_law(model, self.teacherless))
        return {"start": label, "model": model, "hellinger2": score if math.isfinite(score) else math.inf}

    def restart_candidates(self) -> list[dict]:
        """The fresh random restarts, trained (computed once, then memoised)."""
        if self._restart_candidates is None:
            out = []
            for k in range(self.restarts):
                init_seed = self.seed * 1_000 + 7_919 * (k + 1)
                trained = self._train(self._fresh(init_seed), k, warmup=self.steps // 2)
                out.append(self._candidate(f"restart seed={init_seed}", trained))
            self._restart_candidates = out
        return self._restart_candidates

    # ------------------------------------------------------------------ the result
    def best(self, like, starts=()) -> dict:
        """The result of :func:`neural_best_in_class` for this learner's fit ``like``."""
        threads = torch.get_num_threads()
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        try:
            return self._best(like, starts)
        finally:
            torch.set_num_threads(threads)

    def _best(self, like, starts) -> dict:
        t0 = time.perf_counter()
        if not isinstance(starts, (list, tuple)):
            raise TypeError(f"starts must be a list or tuple of policies of like's class, got {type(starts).__name__}")
        own = self._check_member(like, "like")
        given = [self._check_member(s, f"starts[{i}]") for i, s in enumerate(starts)]
        cands = list(self.restart_candidates())
        cands.append(self._candidate("the learner's fit (untrained)", copy.deepcopy(own)))
        cands.append(self._candidate("the learner's fit, trained", self._train(own, 1_000_000)))
        for i, model in enumerate(given):
            cands.append(self._candidate(f"starts[{i}], trained", self._train(model, 2_000_000 + i)))
        winner = min(cands, key=lambda c: c["hellinger2"])  # the first of equals: restarts, then the learner's
        if not math.isfinite(winner["hellinger2"]):
            raise FloatingPointError(f"neural_best_in_class: every candidate's D_H^2 is non-finite on {self.task!r}")
        member = _law(winner["model"], self.teacherless)
        if self.rows.exact:
            value, ci, value_exact = winner["hellinger2"], None, True
        else:  # fresh samples: the selected value is optimistically biased, this one is not
            est = monte_carlo_metrics(self.task, member, self.eval_samples, self.seed + _EVAL_SET,
                                      which=("hellinger2",))["hellinger2"]
            value, ci, value_exact = est.value, [float(est.ci95[0]), float(est.ci95[1])], False
        kind = self.kind + (" (teacherless decoding)" if self.teacherless else "")
        extra = f" + {len(given)} given start(s)" if given else ""
        method = (f"estimate: {kind} trained on sequence-level D_H^2 ({self.rows.label}), {self.restarts} restarts + "
                  f"the learner's fit{extra}; upper bound on the class minimum, so C is a lower estimate")
        return {
            "hellinger2": float(value),
            "method": method,
            "exact": False,
            "value_exact": value_exact,
            "ci95": ci,
            "restarts": self.restarts,
            "candidates": [float(c["hellinger2"]) for c in cands],
            "candidate_starts": [c["start"] for c in cands],
            "chosen": winner["start"],
            "selection": "exact" if self.rows.exact else f"monte-carlo m={len(self.select_rows)} (independent of training)",
            "kind": kind,
            "config": dict(self.config),
            "steps": self.steps,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "policy": member,
            "wall_s": time.perf_counter() - t0,
        }


def neural_best_in_class(task: Task, like, *, starts=(), restarts: int = DEFAULT_RESTARTS, steps: int = DEFAULT_STEPS,
                         lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                         mc_samples: int = DEFAULT_MC_SAMPLES, eval_samples: int = DEFAULT_EVAL_SAMPLES,
                         enumerate_limit: int = ENUMERATE_LIMIT, torch_threads: int | None = 1) -> dict:
    """An estimated best in class of ``like``'s neural class on ``task`` (see the module docstring).

    ``like``: the learner's fitted policy (a ``TokenPolicy`` or a ``TeacherlessPolicy``); its
    kind, configuration and stream define the class, and its weights are a candidate.
    ``starts``: more members of the same class to train from. ``restarts`` fresh random
    initialisations; each start gets ``steps`` Adam steps on the objective, fresh ones after
    ``steps // 2`` on the log loss (learning rate ``lr`` cosine-decayed to ``lr / 20``,
    minibatches of ``batch_size`` rows unless the rows fit in one). ``seed``: the restarts'
    initial weights, the minibatches and the Monte-Carlo sample sets.
    ``mc_samples``: expert samples of the Monte-Carlo objective (and of the independent
    selection set); ``eval_samples``: fresh expert samples for the reported value.
    ``enumerate_limit``: the largest ``contexts x V^H`` (contexts, for deterministic experts)
    whose exact objective is used. ``torch_threads``: torch's intra-op threads during the
    search (restored after; ``None`` leaves them alone): one thread is faster for these small
    batches, and on a shared machine.

    Returns ``{"hellinger2", "method", "exact": False, "value_exact", "ci95", "restarts",
    "candidates", "candidate_starts", "chosen", "kind", "config", ..., "policy"}``:
    ``hellinger2`` is the D_H^2 of the best member found, an upper bound on the class minimum
    (so ``C`` is a lower estimate); ``exact`` is False because the minimisation is not exact;
    ``value_exact`` says whether that member's D_H^2 itself is exact (enumeration) or a
    Monte-Carlo estimate on fresh samples with its 95% interval ``ci95``; ``candidates`` are
    every candidate's D_H^2 on the selection rows (exact, or the independent selection set);
    ``policy`` is the chosen member (same wrapper as ``like``).
    """
    search = NeuralBestSearch(task, like, restarts=restarts, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                              mc_samples=mc_samples, eval_samples=eval_samples, enumerate_limit=enumerate_limit,
                              torch_threads=torch_threads)
    return search.best(like, starts)
