"""Path-star graphs: the planning task on which teacher-forced next-token prediction cheats."""

from __future__ import annotations

import numpy as np

from ..core import DeterministicTask, as_rng, check_choice, check_int
from ..mathutil import random_orders, shuffle_rows

ORDERS = ("forward", "reverse")
OFF_PATH_MODES = ("reference", "consistent")
MAX_NODES = 2**22  # the generator sorts an edge's two ids packed in 2 x 22 bits with its random key


class PathStar(DeterministicTask):
    """Path-star graph G_{d,l}(N) (Bachmann & Nagarajan 2024, "The Pitfalls of Next-Token Prediction").

    ## Description
    Each context is a star: a source node with ``d`` arms (``degree``), each arm a chain of
    ``l - 1`` further nodes (``path_length = l``). The ``d (l - 1) + 1`` node ids are distinct,
    drawn uniformly from ``0 .. N-1`` (``num_nodes = N``); one arm, chosen uniformly, ends at the
    goal. Edges point away from the source. The prompt is the shuffled edge list, then the source
    and the goal; the answer is the path from the source to the goal (``l`` nodes, source first),
    or with ``order="reverse"`` the same path backwards (goal first, source last).

    Tokens (the paper's serialisation ``u,v|u,v|...|u,v/source,goal=answer`` with the commas
    dropped): node ids ``0 .. N-1``, ``'|' = N``, ``'=' = N+1``, ``'/' = N+2`` and the dummy
    ``'$' = N+3`` (used only by the teacherless view), so ``vocab_size = N + 4``. With
    ``E = d (l - 1)`` edges the context (prompt) is::

        u_1 v_1 | u_2 v_2 | ... | u_E v_E / source goal =

    ``3 E - 1`` tokens of edges and separators plus ``/ source goal =``: ``context_length =
    3 d (l - 1) + 3``. Edge ``i`` sits at positions ``3i, 3i+1``; the source at ``3E``, the goal
    at ``3E + 1``. The edge list is a uniformly random permutation, so the position of the goal
    arm's edges carries no information.

    ## Action Space
    ``Discrete(N + 4)``: the next answer token. ``action_mask`` (the environments'
    ``action_masks()``) allows only the nodes of the prompt's graph.

    ## Observation Space
    ``MultiDiscrete([N + 4] * (3 d (l-1) + 3) + [N + 5] * l)``: the prompt, then the answer tokens
    generated so far, padded with ``N + 4``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    ``1`` at the last step if the answer equals the true path (in the task's order), else ``0``.

    ## Expert
    Deterministic (one-hot). On its own path it emits the true path token by token. After an
    off-path prefix (what DAgger queries) the choice is set by ``off_path``:

    * ``"reference"`` (default): emit the true path's token at the current position, whatever
      the prefix (the reference sequence, by position).
    * ``"consistent"``: continue the walk the prefix is on. ``order="forward"``: if the last
      token is a node with a unique child in the graph (a non-source node that is not the end
      of its arm) emit that child, so a walk that went down a wrong arm continues down that arm.
      ``order="reverse"``: if the last token is a non-source node of the graph emit its parent
      (walk back towards the source). In every other case (empty prefix, last token the source,
      an arm's end, a node id not in the graph, a separator) emit the reference token. On the
      expert's own path both modes agree.

    ## Misspecification
    The canonical learner is a causal sequence model (a small GPT) trained by teacher forcing:
    inputs ``prompt + answer[:-1]``, loss on the answer positions (:meth:`teacher_forcing_batch`).
    Under teacher forcing every answer token after the second is a local lookup ("the child of
    the previous token"), which is learned first ("Clever Hans" cheat); the one hard decision,
    answer position 2 (which arm leads to the goal), then gets almost no signal and is guessed:
    teacher-forced accuracy near 1 at positions >= 3, near ``1/d`` at position 2, free-running
    outputs valid arms but the wrong one (exact-path accuracy about ``1/d``). ``degree`` and
    ``path_length`` set how hard the planning is. Two remedies change the objective, not the
    model: the teacherless view (:meth:`teacherless_batch`: inputs ``prompt + (l-1) x '$'``,
    all ``l`` answer tokens predicted at once) and ``order="reverse"``, in which every step,
    including position 2, is a lookup (the parent of the previous token).

    ``extra_metrics`` reports ``exact_match``, ``first_decision_accuracy`` (answer position 2,
    i.e. index 1, is right: the arm choice in forward order; in reverse order the goal's parent,
    a lookup) and ``valid_arm_rate`` (the answer is a walk along one whole arm from the source,
    forward, or back from an arm's end to the source, reverse, correct arm or not; so
    ``valid_arm_rate - exact_match`` is the rate of valid but wrong arms).

    ## Arguments
    * ``degree`` (d >= 2, default 5), ``path_length`` (l >= 2, default 5: nodes on the answer
      path including source and goal; ``horizon = l``), ``num_nodes`` (N >= d (l - 1) + 1,
      default 50, at most ``2^22``; a smaller N raises ``ValueError`` at construction), ``order`` (``"forward"``
      default | ``"reverse"``), ``off_path`` (``"reference"`` default | ``"consistent"``).
    * The defaults are the reference setting G(5, 5) with N = 50.

    ## Version History
    * v0: initial release.
    """

    name = "path-star"
    env_id = "PathStar-v0"
    horizon_arg = "path_length"

    def __init__(
        self,
        degree: int = 5,
        path_length: int = 5,
        num_nodes: int = 50,
        order: str = "forward",
        off_path: str = "reference",
    ):
        self.degree = check_int("degree", degree, 2)
        self.path_length = check_int("path_length", path_length, 2)
        d, l = self.degree, self.path_length
        minimum = d * (l - 1) + 1
        if minimum > MAX_NODES:
            raise ValueError(
                f"degree*(path_length-1)+1 must be at most {MAX_NODES} node ids, got {minimum} "
                f"for degree={d}, path_length={l}"
            )
        try:
            self.num_nodes = check_int("num_nodes", num_nodes, minimum)
        except ValueError as exc:
            raise ValueError(
                f"{exc}: every graph needs degree*(path_length-1)+1 = {minimum} distinct node ids "
                f"for degree={d}, path_length={l}"
            ) from None
        check_int("num_nodes", self.num_nodes, minimum, MAX_NODES)  # the generator packs an edge in 44 bits
        self.order = check_choice("order", order, ORDERS)
        self.off_path = check_choice("off_path", off_path, OFF_PATH_MODES)

        N = self.num_nodes
        self.pipe, self.equals, self.slash, self.dollar = N, N + 1, N + 2, N + 3
        self.num_edges = d * (l - 1)
        self.horizon = l
        self.vocab_size = N + 4
        self.context_vocab_size = N + 4
        self.context_length = 3 * self.num_edges + 3
        E = self.num_edges
        # the fixed (non-node) part of every prompt
        self._template = np.full(self.context_length, -1, dtype=np.int64)
        self._template[2 : 3 * E - 1 : 3] = self.pipe
        self._template[3 * E - 1] = self.slash
        self._template[3 * E + 2] = self.equals
        self._node_slots = self._template < 0
        self.check_episode_size(f"degree={d}, path_length={l}, num_nodes={N}")

    def task_args(self) -> dict:
        return {
            "degree": self.degree,
            "path_length": self.path_length,
            "num_nodes": self.num_nodes,
            "order": self.order,
            "off_path": self.off_path,
        }

    def token_names(self) -> list[str]:
        return [str(i) for i in range(self.num_nodes)] + ["|", "=", "/", "$"]

    def context_token_names(self) -> list[str]:
        return self.token_names()

    def render_tokens(self, context, tokens) -> str:
        """The paper's serialisation: ``u,v|u,v|.../source,goal=answer`` (commas between nodes)."""
        names = self.token_names()
        toks = [int(t) for t in np.concatenate([np.asarray(context).ravel(), np.asarray(tokens).ravel()])]
        out = []
        for i, t in enumerate(toks):
            if i and t < self.num_nodes and toks[i - 1] < self.num_nodes:
                out.append(",")
            out.append(names[t] if 0 <= t < len(names) else f"<{t}>")
        return "".join(out)

    # ------------------------------------------------------------------ generator
    def sample_bytes(self, n: int) -> int:
        """:meth:`Task.sample_bytes` plus the generator's ``(n, num_nodes)`` random order of the
        ids and the expert's ``(n, vocab_size)`` parent / child tables."""
        return super().sample_bytes(n) + 8 * n * (2 * self.num_nodes + 2 * self.vocab_size)

    def _sample(self, n: int, rng, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(contexts (n, L), forward paths (n, l))`` from one seeded generator; the contexts
        are written into ``out`` (an integer array ``(n, L)``) if given, else a new int64 array.

        The star has ``E + 1`` slots: slot 0 is the source and slot ``1 + e`` the child of edge
        ``e = a (l - 1) + k`` (arm ``a``, depth ``k``), whose parent is the source (``k = 0``)
        or slot ``e``. The slots get the first ``E + 1`` entries of a uniformly random
        permutation of the ids (distinct ids, uniformly assigned) and the prompt lists the edges
        in a second, independent, uniformly random order. The goal is the end of arm 0: with
        uniformly random ids and edge order, every arm is equally likely to be the goal arm
        given the prompt (relabelling the arms preserves the law), so a fixed arm leaks nothing
        and saves a draw.
        """
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        if out is not None:
            self.check_context_buffer(out, n)
        l, E = self.path_length, self.num_edges
        N = self.num_nodes
        nodes = random_orders(rng, n, N, E + 1)  # uint32 or uint64
        # the edges as keys parent << b | child, shuffled per row (the sort of shuffle_rows
        # carries both ids along): the child of edge e is slot e + 1, its parent slot e, except
        # at the arms' first edges (e a multiple of l - 1), whose parent is the source
        b = max(1, (N - 1).bit_length())
        edges = nodes[:, :E] << b
        edges[:, :: l - 1] = edges[:, :1]
        edges |= nodes[:, 1:]
        edges = shuffle_rows(rng, edges, 2 * b)
        ctx = np.empty((n, self.context_length), dtype=np.int64) if out is None else out
        ctx[:, 0 : 3 * E : 3] = edges >> b
        edges &= (1 << b) - 1
        ctx[:, 1 : 3 * E : 3] = edges
        ctx[:, 2 : 3 * E - 1 : 3] = self.pipe
        ctx[:, 3 * E - 1] = self.slash
        ctx[:, 3 * E] = nodes[:, 0]
        ctx[:, 3 * E + 1] = nodes[:, l - 1]
        ctx[:, 3 * E + 2] = self.equals
        return ctx, nodes[:, :l].astype(np.int64)

    def sample_contexts(self, n, rng):
        return self._sample(n, rng)[0]

    def sample_contexts_planned(self, n, rng, out=None):
        ctx, path = self._sample(n, rng, out)
        # the reference expert reads only the answer; the consistent one also its step table
        step = None if self.off_path == "reference" else self._links(ctx, parents=self.order == "reverse")
        return ctx, (step, self._in_order(path))

    def sample_expert(self, n, rng=None):
        """Contexts and their answers, fully vectorised (same contexts as ``sample_contexts``
        with the same generator state)."""
        ctx, path = self._sample(n, rng)
        return ctx, self._in_order(path)

    def _in_order(self, path: np.ndarray) -> np.ndarray:
        """Forward paths ``(n, l)`` as answers in the task's order."""
        return path if self.order == "forward" else path[:, ::-1].copy()

    # ------------------------------------------------------------------ reading a prompt
    def _check_contexts(self, contexts) -> np.ndarray:
        ctx = self.check_contexts(contexts)
        fixed = ~self._node_slots
        if ctx.size and (
            np.any(ctx[:, fixed] != self._template[fixed])
            or np.any(ctx[:, self._node_slots] < 0)
            or np.any(ctx[:, self._node_slots] >= self.num_nodes)
        ):
            raise ValueError(
                "contexts must be path-star prompts 'u v | ... | u v / source goal =' with node ids "
                f"in [0, {self.num_nodes - 1}] (as made by sample_contexts)"
            )
        return ctx

    def _graph(self, contexts):
        """``(parent (n, V), child (n, V), path (n, l) forward)``; ``-1`` where undefined.

        ``child`` is defined for non-source nodes that are not the end of an arm (their unique
        child); ``parent`` for every non-source node of the graph.
        """
        ctx = self._check_contexts(contexts)
        n, E = len(ctx), self.num_edges
        source, goal = ctx[:, 3 * E], ctx[:, 3 * E + 1]
        parent, child = self._links(ctx, parents=True), self._links(ctx, parents=False)
        path = np.empty((n, self.path_length), dtype=np.int64)
        path[:, -1] = goal
        for k in range(self.path_length - 1, 0, -1):
            path[:, k - 1] = parent[np.arange(n), np.maximum(path[:, k], 0)]
            path[:, k - 1] = np.where(path[:, k] < 0, -1, path[:, k - 1])
        if n and np.any(path[:, 0] != source):
            raise ValueError(
                f"contexts must be path-star graphs: the goal must lie {self.path_length - 1} edges from the source"
            )
        return parent, child, path

    def _links(self, ctx: np.ndarray, parents: bool) -> np.ndarray:
        """``(n, V)`` table read off the prompts' edge lists, ``-1`` where undefined: each
        node's parent (``parents=True``) or its unique child (the source has ``d``: none)."""
        n, E = len(ctx), self.num_edges
        u, v = ctx[:, 0 : 3 * E : 3], ctx[:, 1 : 3 * E : 3]
        table = np.full((n, self.vocab_size), -1, dtype=np.int64)
        rows = np.arange(n)[:, None]
        if parents:
            table[rows, v] = u
        else:
            table[rows, u] = v
            table[rows[:, 0], ctx[:, 3 * E]] = -1
        return table

    def reference(self, contexts) -> np.ndarray:
        """The true answer (in the task's order) for each prompt, ``(n, l)``."""
        return self._in_order(self._graph(contexts)[2])

    # ------------------------------------------------------------------ expert
    def expert_next_tokens(self, contexts, sequences) -> np.ndarray:
        """The expert's token at every position given the prefix before it, ``(n, T)``
        (``T <= l``): the teacher-forced expert actions, in one vectorised pass."""
        ctx = np.asarray(contexts)
        parent, child, path = self._graph(ctx)
        seq = self.check_tokens("sequences", sequences, len(ctx), max_len=self.horizon)
        T = seq.shape[1]
        out = self._in_order(path)[:, :T].copy()
        if self.off_path == "consistent" and T > 1:
            step = child if self.order == "forward" else parent
            cont = np.take_along_axis(step, seq[:, : T - 1], axis=1)
            out[:, 1:] = np.where(cont >= 0, cont, out[:, 1:])
        return out

    def action_mask(self, contexts, prefixes):
        """Only the nodes of the prompt's graph, ``(n, V)``: every answer token is a node id
        (separators, the dummy and ids absent from the prompt are never right)."""
        ctx = self._check_contexts(contexts)
        self.check_tokens("prefixes", prefixes, len(ctx), max_len=self.horizon - 1)
        mask = np.zeros((len(ctx), self.vocab_size), dtype=bool)
        mask[np.arange(len(ctx))[:, None], ctx[:, self._node_slots]] = True
        return mask

    def expert_plan(self, contexts):
        """The parsed graphs ``(step table, reference answer)`` of an episode's prompts."""
        parent, child, path = self._graph(contexts)
        step = None if self.off_path == "reference" else (parent if self.order == "reverse" else child)
        return step, self._in_order(path)

    def expert_next_token_planned(self, contexts, prefixes, plan):
        step, ref = plan
        n, t = len(ref), np.shape(prefixes)[1]
        if t >= self.horizon:
            raise ValueError(f"prefixes must have length in [0, {self.horizon - 1}], got {t}")
        nxt = ref[:, t].copy()
        if self.off_path == "consistent" and t > 0:
            last = np.asarray(prefixes)[:, t - 1]
            cont = step[np.arange(n), last]
            nxt = np.where(cont >= 0, cont, nxt)
        return nxt

    def reward_planned(self, contexts, sequences, plan):
        seq = self.check_tokens("sequences", sequences, len(plan[1]), exact_len=self.horizon)
        return np.all(seq == plan[1], axis=1).astype(np.float64)

    # ------------------------------------------------------------------ scoring
    def reward(self, contexts, sequences):
        seq = self.check_tokens("sequences", sequences, len(np.asarray(contexts)), exact_len=self.horizon)
        return np.all(seq == self.reference(contexts), axis=1).astype(np.float64)

    def extra_metrics(self, contexts, generated) -> dict[str, float]:
        """``exact_match``, ``first_decision_accuracy`` and ``valid_arm_rate`` (see the class
        docstring), each a mean over the ``n`` generated answers ``(n, l)``."""
        ctx = np.asarray(contexts)
        gen = self.check_tokens("generated", generated, len(ctx), exact_len=self.horizon)
        parent, _, path = self._graph(ctx)
        n = len(ctx)
        if n == 0:
            raise ValueError("extra_metrics needs at least one generated answer (n >= 1)")
        fwd = gen if self.order == "forward" else gen[:, ::-1]
        ref = self._in_order(path)
        # a valid arm: starts at the source and every step follows an edge (parents are unique,
        # and every arm has l-1 nodes, so l-1 steps from the source end at an arm's end)
        valid = fwd[:, 0] == path[:, 0]
        for k in range(1, self.horizon):
            valid &= parent[np.arange(n), fwd[:, k]] == fwd[:, k - 1]
        return {
            "exact_match": float(np.mean(np.all(gen == ref, axis=1))),
            "first_decision_accuracy": float(np.mean(gen[:, 1] == ref[:, 1])),
            "valid_arm_rate": float(np.mean(valid)),
        }

    # ------------------------------------------------------------------ training views
    def _full(self, contexts, sequences):
        ctx = self._check_contexts(contexts)
        seq = self.check_tokens("sequences", sequences, len(ctx), exact_len=self.horizon)
        return ctx, seq

    def teacher_forcing_batch(self, contexts, sequences):
        """Next-token training view ``(inputs, targets, loss_mask)``, each ``(n, L + l - 1)``.

        ``inputs = prompt + answer[:-1]``, ``targets[:, i]`` is the token after ``inputs[:, i]``
        (``(prompt + answer)[:, i + 1]``) and ``loss_mask`` is ``True`` on the ``l`` positions whose
        target is an answer token (``i >= L - 1``): the loss is on the answer only.
        """
        ctx, seq = self._full(contexts, sequences)
        full = np.concatenate([ctx, seq], axis=1)
        return full[:, :-1].copy(), full[:, 1:].copy(), self._answer_mask(len(ctx))

    def teacherless_batch(self, contexts, sequences):
        """Teacherless (multi-token) view ``(inputs, targets, loss_mask)``, each ``(n, L + l - 1)``.

        ``inputs = prompt + (l - 1) x '$'``: the model never sees an answer token; ``targets`` and
        ``loss_mask`` are those of :meth:`teacher_forcing_batch`, so all ``l`` answer tokens are
        predicted at once (positions ``L - 1 .. L + l - 2``) and decoded in one parallel pass.
        """
        ctx, seq = self._full(contexts, sequences)
        n = len(ctx)
        inputs = np.concatenate([ctx, np.full((n, self.horizon - 1), self.dollar, dtype=np.int64)], axis=1)
        targets = np.concatenate([ctx, seq], axis=1)[:, 1:]
        return inputs, targets.copy(), self._answer_mask(n)

    def _answer_mask(self, n: int) -> np.ndarray:
        mask = np.zeros((n, self.context_length + self.horizon - 1), dtype=bool)
        mask[:, self.context_length - 1 :] = True
        return mask
