"""Progress (issue 10 item 4): the hook training loops call, the events a ``progress=`` callable
receives (one per cell, inner ones from inside cells), the bar on a terminal and the plain lines
elsewhere."""

from __future__ import annotations

import io
import re
import sys

import pytest

from ar_agents.evaluation import progress as pg
from ar_agents.evaluation.sweep import ResultsFile, sweep


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class Boom:
    """A user's algorithm whose seed 1 fails."""

    name = "boom"

    def fit(self, task, demos, seed):
        from ar_agents.algorithms import get_algorithm

        if seed == 1:
            raise FloatingPointError("the loss is not finite (seed 1)")
        return get_algorithm("bc").fit(task, demos, seed)


def test_report_reaches_only_the_listeners_of_the_moment():
    got = []
    pg.report("epoch", 1, 3)  # nobody listens: nothing happens
    assert not pg.listening()
    with pg.listen(lambda *a: got.append(("outer", *a))):
        pg.report("round", 1, 2)
        with pg.listen(lambda *a: got.append(("inner", *a))):
            pg.report("epoch", 2, None)
        pg.report("round", 2, 2)
    pg.report("epoch", 3, 3)
    assert got == [("outer", "round", 1, 2), ("outer", "epoch", 2, None), ("inner", "epoch", 2, None),
                   ("outer", "round", 2, 2)]
    assert not pg.listening()


def test_stages_nest_and_reset():
    s = pg.Stages()
    s.update("round", 1, 3)
    s.update("epoch", 1, 10)
    s.update("epoch", 4, 10)
    assert s.text() == "round 1/3 epoch 4/10"
    s.update("round", 2, 3)  # a new round: its epochs start again
    assert s.text() == "round 2/3"
    s.update("epoch", 10, 10)
    s.update("ppo step", 128, None)  # a new stage after a finished one: the finished one goes
    assert s.text() == "round 2/3 ppo step 128"


def test_throttle_passes_each_stage_first_report_then_at_most_one_per_interval(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(pg.time, "monotonic", lambda: now[0])
    sent = []
    t = pg.Throttle(lambda *a: sent.append(a), interval=0.5)
    for i in range(1, 11):  # ten reports 0.1 s apart
        t("epoch", i, 10)
        now[0] += 0.1
    t("round", 1, 2)  # a new stage: always sent
    assert sent == [("epoch", 1, 10), ("epoch", 6, 10), ("round", 1, 2)]


def test_the_callback_gets_one_event_per_cell_and_the_loops_inner_steps(tmp_path, small_neural_best):
    from ar_agents.algorithms import BC, DAgger

    neural = BC(policy="linear", epochs=3)
    neural.name = "bc[linear,epochs=3]"
    dagger = DAgger(rounds=2)
    dagger.name = "dagger[rounds=2]"
    events = []
    out = tmp_path / "r.jsonl"
    with pytest.raises(FloatingPointError, match="seed 1"):  # raised when every other cell is done
        sweep("two-branch", [3], [neural, dagger, Boom()], seeds=2, n_samples=60, eval_samples=200, out=out,
              progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and events[0].total == 6
    done = [e for e in events if e.kind == "done"]
    failed = [e for e in events if e.kind == "failed"]
    assert sorted((e.cell.algorithm, e.cell.seed) for e in done) == sorted(
        [(neural.name, 0), (neural.name, 1), (dagger.name, 0), (dagger.name, 1), ("boom", 0)])
    assert [(e.cell.algorithm, e.cell.seed, e.error) for e in failed] == [
        ("boom", 1, "FloatingPointError: the loss is not finite (seed 1)")]
    assert events[-1].done == 5 and events[-1].failed == 1
    assert sorted((r["algorithm"], r["seed"]) for r in ResultsFile(out).records()) == sorted(
        (e.cell.algorithm, e.cell.seed) for e in done)  # the finished cells are saved
    for cell in {e.cell for e in done}:
        inner = [(e.stage, e.stage_i, e.stage_total) for e in events if e.kind == "inner" and e.cell == cell]
        if cell.algorithm == neural.name:  # three epochs, then the neural best in class's search
            assert inner[:3] == [("epoch", 1, 3), ("epoch", 2, 3), ("epoch", 3, 3)]
            assert inner[3][0] == "best-in-class step"
        elif cell.algorithm == dagger.name:  # rounds 0..2 on the log-linear class
            assert inner == [("round", 1, 3), ("round", 2, 3), ("round", 3, 3)]
        else:
            assert inner == []
    # an inner event of a cell comes before that cell's "done"
    for i, e in enumerate(events):
        if e.kind == "inner":
            assert any(d.kind == "done" and d.cell == e.cell for d in events[i + 1:])


def _run_showing(monkeypatch, stream, tmp_path):
    monkeypatch.setattr(sys, "stderr", stream)
    from ar_agents.algorithms import BC

    neural = BC(policy="linear", epochs=2)
    neural.name = "bc[linear]"
    sweep("two-branch", [3], ["bc", neural], seeds=1, n_samples=60, eval_samples=200, progress=True,
          out=tmp_path / f"{type(stream).__name__}.jsonl")
    return stream.getvalue()


def test_a_terminal_gets_a_bar_and_a_log_file_plain_lines(monkeypatch, tmp_path, small_neural_best):
    plain = _run_showing(monkeypatch, io.StringIO(), tmp_path)
    assert "\r" not in plain
    lines = plain.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[1/2\] two-branch H=3 bc seed=0: D_H\^2=\S+ C=\S+ \(\d+\.\d\ds, \d+s total\)", lines[0])
    assert lines[1].startswith("[2/2] two-branch H=3 bc[linear] seed=0: D_H^2=")
    tty = _run_showing(monkeypatch, FakeTTY(), tmp_path)
    assert "\r" in tty and "0/2 cells" in tty and "2/2 cells" in tty
    assert "bc[linear] seed=0: epoch 1/2" in tty or "bc[linear] seed=0: best-in-class step" in tty  # the inner stage
    assert "[1/2] two-branch H=3 bc seed=0: D_H^2=" in tty  # the finished cells' lines above the bar
    assert "00:00<" in tty  # elapsed < remaining (the ETA)


def test_progress_false_prints_nothing_and_a_bad_value_is_refused(monkeypatch, tmp_path, capsys):
    sweep("two-branch", [3], ["bc"], seeds=1, n_samples=60, eval_samples=200, progress=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be True, False or a callable"):
        sweep("two-branch", [3], ["bc"], seeds=1, n_samples=60, eval_samples=200, progress="yes")


@pytest.mark.slow
def test_worker_processes_forward_their_inner_progress(tmp_path, small_neural_best):
    from ar_agents.algorithms import BC

    neural = BC(policy="linear", epochs=3)
    neural.name = "bc[linear]"
    events = []
    recs = sweep("two-branch", [3, 4], [neural], seeds=1, n_samples=60, eval_samples=200, workers=2,
                 progress=events.append)
    assert len(recs) == 2 and [e.kind for e in events].count("done") == 2
    for rec in recs:  # each cell's first epoch report always gets through the throttle
        assert any(e.kind == "inner" and e.cell.horizon == rec["horizon"] and (e.stage, e.stage_i) == ("epoch", 1)
                   for e in events)


def test_ppo_reports_its_steps_and_listening_changes_no_number():
    import torch

    from ar_agents.algorithms.ppo import PPO
    from ar_envs.data import generate
    from ar_envs.tasks import TwoBranch

    task = TwoBranch(horizon=4, eps=0.1)
    demos = generate(task, 20, seed=0)

    def fit():
        return PPO(policy="linear", total_timesteps=512, n_steps=64, n_envs=4, eval_episodes=20).fit(task, demos, 0)

    quiet = fit()
    got = []
    with pg.listen(lambda *a: got.append(a)):
        heard = fit()
    assert got == [("ppo step", 256, 512), ("ppo step", 512, 512)]  # one report per roll-out of 4 x 64 steps
    for a, b in zip(quiet.state_dict().values(), heard.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_failing_cell_in_a_worker_process_does_not_stop_the_others(tmp_path, monkeypatch):
    (tmp_path / "boom_algos.py").write_text(
        "from ar_agents.algorithms import get_algorithm\n"
        "class Boom:\n"
        "    def fit(self, task, demos, seed):\n"
        "        if seed == 1:\n"
        "            raise FloatingPointError(f'the loss is not finite (seed 1, H={task.horizon})')\n"
        "        return get_algorithm('bc').fit(task, demos, seed)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned workers get this sys.path
    events, out = [], tmp_path / "r.jsonl"
    with pytest.raises(FloatingPointError, match=r"seed 1, H=[34]"):
        sweep("two-branch", [3, 4], ["boom_algos:Boom"], seeds=2, n_samples=60, eval_samples=200, workers=2, out=out,
              progress=events.append)
    assert sorted((e.cell.horizon, e.cell.seed) for e in events if e.kind == "failed") == [(3, 1), (4, 1)]
    assert sorted((r["horizon"], r["seed"]) for r in ResultsFile(out).records()) == [(3, 0), (4, 0)]
