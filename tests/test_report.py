"""The report: rows by the swept argument, pooling only seeds of one cell, ~ per number, the
diagnostics, the flags and the plots (issue 9 items 23, 24; issue 8 item 7, report side).

The records here are written by hand (every field a sweep writes that the report reads), so
each expected number is computed independently of the report's code."""

import json
import math
import os

import numpy as np
import pytest

from ar_agents.evaluation import report as report_mod
from ar_agents.evaluation.report import report
from ar_agents.evaluation.sweep import ResultsFileError

HEADER = json.dumps({"format": "ar-envs-results", "version": 1, "ar_envs_version": "test"})


def _rec(**over):
    h = over.pop("horizon", 4)
    rec = {
        "task": "two-branch", "task_args": {"horizon": h, "eps": 0.05, "offset": 1.0}, "horizon": h,
        "sweep_arg": {"horizon": h}, "task_kwargs": {"eps": 0.05}, "algorithm": "bc", "seed": 0,
        "n_samples": 100, "eval_samples": 1000, "hellinger2": 0.2, "tv": 0.1, "kl": 0.3, "regret": 0.0,
        "best_in_class_hellinger2": 0.1, "best_in_class_method": "closed-form", "best_in_class_exact": True,
        "approx_factor": 2.0, "approx_factor_ci95": None, "exact": True, "ci95": {},
        "metric_methods": {"hellinger2": "closed-form", "tv": "closed-form", "kl": "closed-form", "regret": "closed-form"},
        "diagnostics": None, "wall_s": 0.1,
    }
    rec.update(over)
    return rec


def _write(path, recs):
    path.write_text("\n".join([HEADER] + [json.dumps(r) for r in recs]) + "\n")
    return str(path)


def _ci(values, low=-math.inf, high=math.inf):
    """Mean and t-interval over seeds, cut to the quantity's range [low, high] (a distance is
    >= 0, a rate in [0, 1])."""
    from ar_agents.evaluation.report import t95

    v = np.asarray(values, dtype=float)
    half = t95(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return v.mean(), max(v.mean() - half, low), min(v.mean() + half, high)


def _row(text, title, label):
    """The table row starting with ``label`` in the table titled ``title``."""
    block = text.split(title, 1)[1].split("\n\n", 1)[0]
    return next(line for line in block.splitlines() if line.split("|")[0].strip() == str(label))


# ---------------------------------------------------------------- item 23: rows by the swept argument


def test_rows_are_the_swept_argument_never_pooled_by_a_shared_horizon(tmp_path):
    # parity without a chain of thought: H = 1 for every n_bits
    recs = []
    for n_bits, values in ((4, (0.1, 0.2)), (8, (0.5, 0.7))):
        for seed, v in enumerate(values):
            recs.append(_rec(task="parity", task_args={"n_bits": n_bits, "cot": "none"}, horizon=1,
                             sweep_arg={"n_bits": n_bits}, task_kwargs={"cot": "none"}, seed=seed, hellinger2=v,
                             approx_factor=None, best_in_class_hellinger2=None,
                             best_in_class_method="unavailable: neural policy class", best_in_class_exact=False))
    text, _ = report(_write(tmp_path / "p.jsonl", recs))
    title = "squared Hellinger distance D_H^2 to the expert"
    assert text.split(title)[1].splitlines()[1].split("|")[:2] == ["n_bits ", "      H "]
    for n_bits, values in ((4, (0.1, 0.2)), (8, (0.5, 0.7))):
        mean, lo, hi = _ci(values, low=0.0)  # D_H^2 >= 0
        cells = [c.strip() for c in _row(text, title, n_bits).split("|")]
        assert cells[1] == "1" and cells[2] == f"{mean:.3f} [{report_mod._fmt(lo)}, {report_mod._fmt(hi)}]"
    assert text.count("task parity (cot=none)") == 1 and "parity ()" not in text


def test_records_differing_in_more_than_the_seed_are_refused_not_pooled(tmp_path):
    recs = [_rec(seed=0), _rec(seed=1, task_args={"horizon": 4, "eps": 0.05, "offset": 2.0})]
    with pytest.raises(ValueError, match="differ in more than the seed"):
        report(_write(tmp_path / "r.jsonl", recs))


# ---------------------------------------------------------------- issue 8 item 7: ~ per number


def test_tilde_marks_only_the_numbers_that_were_estimated(tmp_path):
    c_title, d_title = "approximation factor C(H)", "squared Hellinger distance D_H^2 to the expert"
    mc = "monte-carlo (n=1000)"
    recs = [
        # H=4: D_H^2 exact by a DP, only tv estimated: nothing shown is ~
        _rec(horizon=4, exact=False, metric_methods={"hellinger2": "markov-dp", "tv": mc, "kl": "markov-dp", "regret": "markov-dp"}),
        # H=8: D_H^2 exact, best in class estimated: C and the best-in-class column are ~
        _rec(horizon=8, best_in_class_exact=False, best_in_class_method="optimiser (monte-carlo)"),
        # H=16: D_H^2 estimated: D_H^2 and C are ~, the (exact) best in class is not
        _rec(horizon=16, exact=False, metric_methods={"hellinger2": mc, "tv": mc, "kl": mc, "regret": mc}),
    ]
    text, _ = report(_write(tmp_path / "r.jsonl", recs))
    cell = lambda title, h, k=1: _row(text, title, h).split("|")[k].strip()  # noqa: E731
    assert cell(c_title, 4) == "2.00 [2.00, 2.00]" and cell(d_title, 4) == "0.200 [0.200, 0.200]" and cell(d_title, 4, 2) == "0.100"
    assert cell(c_title, 8) == "~2.00 [2.00, 2.00]" and cell(d_title, 8) == "0.200 [0.200, 0.200]" and cell(d_title, 8, 2) == "~0.100"
    assert cell(c_title, 16) == "~2.00 [2.00, 2.00]" and cell(d_title, 16) == "~0.200 [0.200, 0.200]" and cell(d_title, 16, 2) == "0.100"
    # the method varies by horizon: the header names each
    assert "best in class by closed-form (H=4, 16); optimiser (monte-carlo) (H=8)" in text.splitlines()[0]


def test_an_approx_factor_flag_is_a_footnote(tmp_path):
    flag = "C < 1 beyond its interval: best in class not the class minimum"
    recs = [_rec(horizon=4, hellinger2=0.05, approx_factor=0.5, approx_factor_flag=flag), _rec(horizon=8), _rec(horizon=8, seed=1)]
    text, _ = report(_write(tmp_path / "r.jsonl", recs))
    assert _row(text, "approximation factor C(H)", 4).split("|")[1].strip() == "0.500 [0.500, 0.500] (1)"
    assert "(1)" not in _row(text, "approximation factor C(H)", 8)
    assert f"  (1) {flag}: bc H=4 seed 0" in text.splitlines()


# ---------------------------------------------------------------- item 24: diagnostics in the tables


def test_path_star_first_decision_and_valid_arm_are_tables(tmp_path):
    recs = []
    for seed, (em, fd, va) in enumerate(((0.5, 0.55, 0.6), (0.3, 0.45, 0.4))):
        diag = {"exact_match": em, "first_decision_accuracy": fd, "valid_arm_rate": va, "reward": em,
                "teacher_forced_accuracy": [1.0, 0.5, 1.0], "free_running_accuracy": [1.0, 0.5, 0.5]}
        recs.append(_rec(task="path-star", task_args={"degree": 2, "path_length": 3, "num_nodes": 12}, horizon=3,
                         sweep_arg={"path_length": 3}, task_kwargs={"degree": 2, "num_nodes": 12}, seed=seed,
                         diagnostics=diag, approx_factor=None, best_in_class_hellinger2=None,
                         best_in_class_method="unavailable: neural policy class", best_in_class_exact=False))
    text, _ = report(_write(tmp_path / "ps.jsonl", recs))
    for title, values in (("exact match of the greedy roll-out", (0.5, 0.3)), ("first decision right", (0.55, 0.45)),
                          ("answer is a valid arm", (0.6, 0.4))):
        mean, lo, hi = _ci(values, low=0.0, high=1.0)  # rates
        assert _row(text, title, 3).split("|")[1].strip() == f"~{mean:.3f} [{report_mod._fmt(lo)}, {report_mod._fmt(hi)}]"
    assert "path_length |" in text and "best in class by unavailable" not in text


# ---------------------------------------------------------------- item 24: plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the report saves, by file name (still written to disk)."""
    seen = {}
    real = report_mod.save_png

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        seen[os.path.basename(path)] = {
            "legend": [t.get_text() for t in ax.get_legend().get_texts()], "ylim": ax.get_ylim(),
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()], "title": ax.get_title()}
        real(fig, path, tight)

    monkeypatch.setattr(report_mod, "save_png", keep)
    return seen


def test_plots_are_named_after_the_results_file_and_never_contain_a_colon(tmp_path, figures):
    a = _write(tmp_path / "first.jsonl", [_rec(horizon=h) for h in (3, 4, 5)])
    b = _write(tmp_path / "second.jsonl", [_rec(horizon=h, hellinger2=0.3) for h in (3, 4, 5)])
    _, wa = report(a, str(tmp_path / "plots"))
    _, wb = report(b, str(tmp_path / "plots"))
    assert {os.path.basename(p) for p in wa} == {"first-approx_factor.png", "first-hellinger2.png"}
    assert not set(wa) & set(wb) and all(os.path.exists(p) for p in wa + wb)
    two = [_rec(horizon=3, task="my_pkg.tasks:MyTask", task_kwargs={}), _rec(horizon=3, task_kwargs={"eps": 0.1})]
    _, wc = report(_write(tmp_path / "a:b.jsonl", two), str(tmp_path / "plots"))
    assert len(wc) == 4 and not any(":" in os.path.basename(p) for p in wc)


def test_plots_mark_overlaps_and_monte_carlo_points_label_short_horizon_ranges_and_clip_bands(tmp_path, figures):
    mc = "monte-carlo (n=1000)"
    recs = []
    for h in (3, 4, 5):
        for seed in range(2):
            recs.append(_rec(horizon=h, seed=seed, hellinger2=0.2 + 0.01 * seed, approx_factor=2.0 + 0.1 * seed))
            # the same numbers under another name: drawn on top of bc
            recs.append(_rec(horizon=h, seed=seed, algorithm="copy", hellinger2=0.2 + 0.01 * seed, approx_factor=2.0 + 0.1 * seed))
            # an estimate whose interval reaches below 0 and one near 1e-15
            recs.append(_rec(horizon=h, seed=seed, algorithm="mc", hellinger2=[0.05, 1e-15][seed], approx_factor=[0.5, 1e-14][seed],
                             exact=False, metric_methods={"hellinger2": mc, "tv": mc, "kl": mc, "regret": mc}))
    _, written = report(_write(tmp_path / "r.jsonl", recs), str(tmp_path))
    fig = figures["r-hellinger2.png"]
    assert "copy (overlaps bc)" in fig["legend"] and "bc" in fig["legend"]
    assert "open marker: Monte-Carlo estimate" in fig["legend"]
    assert fig["xticklabels"] == ["3", "4", "5"]
    # the axis spans the means and the bands, a band cut at 10x beyond the means: mc's interval
    # [0.025 - x, 0.025 + x] reaches below 0, and is drawn down to 0.025 / 10 only
    bc_mean, _, bc_hi = _ci([0.2, 0.21])
    mc_mean, _, mc_hi = _ci([0.05, 1e-15])
    lo, hi = fig["ylim"]
    assert lo == pytest.approx(mc_mean / 10 / 1.3) and hi == pytest.approx(max(bc_hi, mc_hi) * 1.3)
    assert fig["title"] == "two-branch (eps=0.05)"
    notitle = [_rec(horizon=h, task="hmm", task_kwargs={}, task_args={"horizon": h}) for h in (2, 4, 8)]
    report(_write(tmp_path / "h.jsonl", notitle), str(tmp_path))
    assert figures["h-approx_factor.png"]["title"] == "hmm"


# ---------------------------------------------------------------- item 15: bad results lines


@pytest.mark.parametrize("line,needle", [
    (b"5", "line 3 is not a record"),
    (b"null", "line 3 is not a record"),
    (b'"a string"', "line 3 is not a record"),
    (b"[1, 2]", "line 3 is not a record"),
    (b'{"task": "\xff\xfe"}', "line 3 is not UTF-8"),
    (b"{not json", "line 3 is not valid JSON"),
])
def test_a_bad_results_line_names_the_file_and_the_line(tmp_path, line, needle):
    path = tmp_path / "r.jsonl"
    path.write_bytes(HEADER.encode() + b"\n" + json.dumps(_rec()).encode() + b"\n" + line + b"\n")
    with pytest.raises(ResultsFileError, match=needle) as info:
        report(str(path))
    assert str(path) in str(info.value)


def test_a_plot_never_replaces_a_device_or_fifo(tmp_path):
    path = _write(tmp_path / "r.jsonl", [_rec(horizon=h) for h in (3, 4, 5)])
    os.mkfifo(tmp_path / "r-approx_factor.png")
    with pytest.raises(ValueError, match="not a regular file; refusing to replace it"):
        report(path, str(tmp_path))
    import stat

    assert stat.S_ISFIFO(os.lstat(tmp_path / "r-approx_factor.png").st_mode)


def test_each_policy_class_gets_its_own_best_in_class_column(tmp_path):
    recs = [_rec(seed=s) for s in (0, 1)]  # log-linear (no fit_log: the default class)
    recs += [_rec(algorithm="bc[mlp]", seed=s, hellinger2=0.05, best_in_class_hellinger2=0.04, approx_factor=1.25,
                  best_in_class_exact=False, best_in_class_method="estimate: mlp trained on sequence-level D_H^2",
                  fit_log={"policy_class": "mlp"}) for s in (0, 1)]
    text, _ = report(_write(tmp_path / "r.jsonl", recs))
    title = "squared Hellinger distance D_H^2 to the expert"
    header = text.split(title, 1)[1].splitlines()[1]
    assert "best: log-linear" in header and "best: mlp" in header
    cells = [c.strip() for c in _row(text, title, 4).split("|")]
    assert cells[-2:] == ["0.100", "~0.040"]  # the MLP class's best was estimated
    one_class, _ = report(_write(tmp_path / "s.jsonl", recs[:2]))
    assert "best in class" in one_class.split(title, 1)[1].splitlines()[1]


def test_learners_of_one_class_are_compared_against_the_same_best_member(tmp_path):
    # each neural cell's search also starts from its own learner's fit, so the records' bests differ;
    # the report divides every learner of the class by the smallest of them (the best member found)
    est = dict(best_in_class_exact=False, best_in_class_method="estimate: mlp", fit_log={"policy_class": "mlp"})
    recs = [_rec(algorithm="bc[mlp]", hellinger2=0.4, best_in_class_hellinger2=0.3, approx_factor=0.4 / 0.3, **est),
            _rec(algorithm="dagger[mlp]", hellinger2=0.1, best_in_class_hellinger2=0.1, approx_factor=1.0, **est),
            _rec(hellinger2=0.2, best_in_class_hellinger2=0.15, approx_factor=0.2 / 0.15)]  # log-linear: its own best
    text, _ = report(_write(tmp_path / "r.jsonl", recs))
    cells = [c.strip() for c in _row(text, "approximation factor C(H)", 4).split("|")]
    assert cells[1:] == ["~4.00 [4.00, 4.00]", "~1.00 [1.00, 1.00]", "1.33 [1.33, 1.33]"]
    d = [c.strip() for c in _row(text, "squared Hellinger distance D_H^2 to the expert", 4).split("|")]
    assert d[-2:] == ["~0.100", "0.150"] or d[-2:] == ["0.150", "~0.100"]


def test_a_record_with_nan_is_refused_with_its_line(tmp_path):
    path = _write(tmp_path / "r.jsonl", [_rec()])
    with open(path, "a") as fh:
        fh.write(json.dumps(_rec(seed=1)).replace('"hellinger2": 0.2', '"hellinger2": NaN') + "\n")
    with pytest.raises(ResultsFileError, match="line 3 holds NaN"):
        report(path)


def test_neural_classes_of_different_sizes_are_not_pooled_for_the_best(tmp_path):
    def mlp(hidden, h2, best):
        return _rec(algorithm=f"bc[mlp(hidden={hidden})]", hellinger2=h2, best_in_class_hellinger2=best,
                    approx_factor=h2 / best, best_in_class_exact=False, best_in_class_method="estimate: mlp",
                    fit_log={"policy_class": "mlp"},
                    best_in_class_search={"config": {"hidden": hidden, "window": 3}, "wall_s": 1.0})
    text, _ = report(_write(tmp_path / "r.jsonl", [mlp(2, 0.4, 0.2), mlp(64, 0.05, 0.01)]))
    cells = [c.strip() for c in _row(text, "approximation factor C(H)", 4).split("|")]
    assert cells[1:] == ["~2.00 [2.00, 2.00]", "~5.00 [5.00, 5.00]"]  # each against its own class's best
    header = text.split("squared Hellinger distance D_H^2 to the expert", 1)[1].splitlines()[1]
    assert "best: mlp(hidden=2,window=3)" in header and "best: mlp(hidden=64,window=3)" in header
