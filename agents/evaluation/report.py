"""Tables and plots from a sweep's results file.

For every (task, task arguments other than the swept one) group: a table of the approximation
factor C(H) (against the best member found of each learner's own class at that row: the same
member for every learner of a class) and of D_H^2(H) per algorithm (mean over seeds with a 95% t-interval over seeds,
or the Monte-Carlo interval when there is one seed), the reasoning diagnostics where the task's
expert is deterministic (greedy exact match, path-star's first decision and valid arm, ...),
the fitted growth exponent ``b`` of ``C(H) ~ H^b`` (least squares on log-log, 95% interval),
and a PNG plot of each (log-log; the diagnostics on a linear axis).

Rows are the values of the swept argument (the horizon, or e.g. parity's ``n_bits``), never the
horizon alone; records are pooled only when they differ in nothing but the seed
(:func:`ar_agents.evaluation.sweep.cell_key`), and a record that appears twice counts once. ``~`` marks each
number that was estimated (Monte Carlo), not whole records.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict

import numpy as np

from ar_envs.fileio import atomic_path
from ar_envs.metrics import Estimate

from ar_agents.evaluation.sweep import WELL_SPECIFIED_BELOW, ResultsFile, approx_factor_interval, cell_key

# two-sided 95% Student-t quantiles by degrees of freedom (beyond 30: the normal 1.96)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    if df <= 0:
        return math.inf
    keys = sorted(k for k in _T95 if k <= df)
    return _T95[keys[-1]] if df <= 30 else 1.96


def _swept(rec) -> tuple[str, object]:
    """``(name, value)`` of the record's swept argument (older records: the horizon)."""
    sweep_arg = rec.get("sweep_arg") or {"horizon": rec["horizon"]}
    (name, value), = sweep_arg.items()
    return name, value


def _given_args(rec) -> dict:
    """The task arguments as given to the sweep, without the swept one (the table's rows)."""
    varied = {"horizon", *(rec.get("sweep_arg") or {})}
    given = rec.get("task_kwargs", rec["task_args"])
    return {k: v for k, v in given.items() if k not in varied}


def _group_key(rec, runs: bool = False):
    """Records of one table: same task, same arguments as given to the sweep (defaults that
    depend on the swept argument, e.g. parity's subset size, vary along the rows); ``runs``:
    ``n_samples`` and ``eval_samples`` are part of the table's arguments too (when a file holds
    several of them for one task)."""
    args = sorted((k, str(v)) for k, v in _given_args(rec).items())
    if runs:
        args += [("n_samples", str(rec["n_samples"])), ("eval_samples", str(rec.get("eval_samples")))]
    return rec["task"], tuple(args)


def dedupe(records: list[dict]) -> tuple[list[dict], list[int]]:
    """``(records, duplicates)``: the records with each cell (:func:`ar_agents.evaluation.sweep.cell_key`, seed
    included) kept once, the first; ``duplicates`` are the indices of the others."""
    seen, out, dups = set(), [], []
    for i, rec in enumerate(records):
        key = cell_key(rec)
        if key in seen:
            dups.append(i)
        else:
            seen.add(key)
            out.append(rec)
    return out, dups


NONNEGATIVE = ("approx_factor", "hellinger2", "tv", "first_decision_accuracy", "valid_arm_rate", "exact_match",
               "answer_accuracy", "answer_exact_match", "cot_exact_match")
RATES = NONNEGATIVE[3:]


def _policy_class(rec) -> str:
    """The class a record's best in class belongs to: the task's log-linear class (also for a
    learner outside it, such as a user's tabular policy, which the sweep compares with that
    class), or a neural kind with its configuration (an MLP of another width is another class,
    with its own best member)."""
    kind = (rec.get("fit_log") or {}).get("policy_class", "log-linear")
    config = (rec.get("best_in_class_search") or {}).get("config")
    if not config:
        return kind if str(rec.get("best_in_class_method", "")).startswith("estimate") else "log-linear"
    inner = ",".join(f"{k}={v}" for k, v in sorted(config.items()) if k not in ("max_len",))
    return f"{kind}({inner})"


def _estimated(rec, metric: str) -> bool:
    """Was this record's ``metric`` estimated (Monte Carlo) rather than computed exactly?"""
    methods = rec.get("metric_methods")
    if metric in ("hellinger2", "tv", "kl", "regret"):
        if methods and metric in methods:
            return str(methods[metric]).startswith("monte-carlo")
        return not rec["exact"]
    if metric == "approx_factor":
        return _estimated(rec, "hellinger2") or not rec.get("best_in_class_exact", True)
    if metric == "best":
        return not rec.get("best_in_class_exact", True)
    return True  # reasoning diagnostics: rates on sampled prompts


# the reasoning diagnostics shown as tables (scalars in a record's ``diagnostics``), with titles
DIAGNOSTICS = (
    ("exact_match", "exact match of the greedy roll-out (reasoning diagnostics)"),
    ("first_decision_accuracy", "first decision right (the arm choice; reasoning diagnostics)"),
    ("valid_arm_rate", "answer is a valid arm of the graph (reasoning diagnostics)"),
    ("answer_accuracy", "answer right (reasoning diagnostics)"),
    ("answer_exact_match", "answer exact (reasoning diagnostics)"),
    ("cot_exact_match", "chain of thought exact (reasoning diagnostics)"),
)


def summarise(records: list[dict]) -> dict:
    """``{(task, args): {algorithm: {row: stats}}}`` with mean / lo / hi per metric, a row per
    value of the swept argument (``stats["swept"]`` names it, ``stats["H"]`` is the horizon).
    ``stats["estimated"]`` says per metric whether any seed's number was a Monte-Carlo estimate.
    C(H) is ``D_H^2 / best`` with ``best`` the smallest best in class recorded at that row for the
    learner's policy class: every learner of one class is compared with the same (best found)
    member, also where each cell's search started from its own learner's fit (the neural
    estimate). Records that differ in anything but the seed are never pooled: ``n_samples`` and
    ``eval_samples`` join the table's arguments when a task has several, and any other
    difference within a cell is an error."""
    records, _ = dedupe(records)
    runs = defaultdict(set)
    for r in records:
        runs[_group_key(r)].add((r["n_samples"], r.get("eval_samples")))
    out: dict = defaultdict(lambda: defaultdict(dict))
    cells = defaultdict(list)
    row_best: dict = {}  # (group, row, policy class) -> (the smallest best in class of its records, record)
    for r in records:
        g = _group_key(r, runs=len(runs[_group_key(r)]) > 1)
        cells[(g, r["algorithm"], _swept(r)[1])].append(r)
        b = r.get("best_in_class_hellinger2")
        key = (g, _swept(r)[1], _policy_class(r))
        if b is not None and (key not in row_best or b < row_best[key][0]):
            row_best[key] = (b, r)
    for (g, alg, row), recs in cells.items():
        kinds = {cell_key(r, seed=False) for r in recs}
        if len(kinds) > 1:
            raise ValueError(f"records of {alg} at {_swept(recs[0])[0]}={row} ({g[0]}) differ in more than the seed "
                             f"(e.g. the task's arguments {[r['task_args'] for r in recs[:2]]}): they are not seeds of "
                             "one cell; report them from separate files")
        best, best_rec = row_best.get((g, row, _policy_class(recs[0])), (None, recs[0]))
        stats = {"seeds": len(recs), "exact": all(r["exact"] for r in recs), "swept": _swept(recs[0])[0],
                 "H": recs[0]["horizon"], "best": best, "best_method": best_rec["best_in_class_method"],
                 "policy_class": _policy_class(recs[0]),
                 "flags": [(r["seed"], r["approx_factor_flag"]) for r in recs if r.get("approx_factor_flag")]}
        values = {}
        for r in recs:
            diag = r.get("diagnostics") or {}
            values[id(r)] = {m: diag.get(m) for m, _ in DIAGNOSTICS}
            # C against the row's best of this class (the same member for every learner of the class)
            ok = (best is not None and best > WELL_SPECIFIED_BELOW and r.get("hellinger2") is not None
                  and r.get("approx_factor") is not None)  # a record without C(H) says why in its note
            values[id(r)]["approx_factor"] = r["hellinger2"] / best if ok else None
            ci = (r.get("ci95") or {}).get("hellinger2")
            values[id(r)]["approx_factor_ci95"] = approx_factor_interval(
                Estimate(r["hellinger2"], ci is None, "", tuple(ci) if ci else None), best,
                best_rec.get("best_in_class_ci95")) if ok else None
        metrics = [("approx_factor", "approx_factor_ci95"), ("hellinger2", None), ("tv", None), ("regret", None)]
        metrics += [(m, None) for m, _ in DIAGNOSTICS]
        stats["estimated"] = {m: any(_estimated(r, m) for r in recs) for m, _ in metrics + [("best", None)]}
        stats["estimated"]["best"] = _estimated(best_rec, "best")
        stats["estimated"]["approx_factor"] = stats["estimated"]["hellinger2"] or stats["estimated"]["best"]
        for metric, ci_key in metrics:
            got = [(r, values[id(r)].get(metric) if metric == "approx_factor" or metric not in r else r.get(metric))
                   for r in recs]
            vals = np.array([v for _, v in got if isinstance(v, (int, float)) and not isinstance(v, bool)], dtype=np.float64)
            if len(vals) == 0:
                stats[metric] = None
                continue
            mean = float(vals.mean())
            if len(vals) > 1:
                half = t95(len(vals) - 1) * float(vals.std(ddof=1)) / math.sqrt(len(vals))
                lo, hi = mean - half, mean + half
                if metric in NONNEGATIVE:  # an interval of a distance or a rate stays in its range
                    lo = max(lo, 0.0)
                if metric in RATES:
                    hi = min(hi, 1.0)
            else:
                if metric == "approx_factor":
                    ci = values[id(recs[0])]["approx_factor_ci95"]
                else:
                    ci = recs[0].get(ci_key) if ci_key else (recs[0].get("ci95") or {}).get(metric)
                lo, hi = (ci if ci else (mean, mean))
            stats[metric] = {"mean": mean, "lo": lo, "hi": hi}
        out[g][alg][row] = stats
    return out


def growth_exponent(horizons, values):
    """Slope ``b`` of ``log C = a + b log H`` with a 95% interval (needs >= 3 positive points)."""
    h = np.asarray(horizons, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = (h > 0) & (v > 0) & np.isfinite(v)
    x, y = np.log(h[ok]), np.log(v[ok])
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    X = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    s2 = float(resid @ resid) / (len(x) - 2)
    se = math.sqrt(s2 / float(((x - x.mean()) ** 2).sum()))
    half = t95(len(x) - 2) * se
    return float(coef[1]), float(coef[1] - half), float(coef[1] + half)


TABLES = (
    ("approx_factor", "approximation factor C(H) = D_H^2(learner) / D_H^2(best in class)"),
    ("hellinger2", "squared Hellinger distance D_H^2 to the expert"),
    *DIAGNOSTICS,
)


def class_label(cls: str, classes) -> str:
    """A class's short name: its kind (``mlp``), with the configuration only where two classes of
    one kind share the table."""
    kind = cls.split("(")[0]
    return kind if sum(c.split("(")[0] == kind for c in classes) == 1 else cls


def best_by_class(algs: dict) -> dict:
    """``{policy class: {row: (best-in-class D_H^2, estimated)}}`` of a task group: each class
    (the log-linear class, an MLP, a transformer, ...) has its own best member."""
    out: dict = {}
    for by_h in algs.values():
        for h, st in by_h.items():
            if st["best"] is not None:
                out.setdefault(st.get("policy_class", "log-linear"), {}).setdefault(h, (st["best"], st["estimated"]["best"]))
    return out


def group_best(algs: dict) -> tuple[str, dict]:
    """``(method, {row: best-in-class D_H^2})`` of a task group: per row, the first
    algorithm's record that has one (neural policy classes carry none)."""
    methods, best = _best_methods(algs), {}
    for by_h in algs.values():
        for h, st in by_h.items():
            if st["best"] is not None:
                best.setdefault(h, st["best"])
    return (next(iter(methods.values())) if methods else "unavailable"), best


def _best_methods(algs: dict) -> dict:
    """``{row: best-in-class method}``: the method of the first record with a best in class at
    each row (else of the first record at all)."""
    methods = {}
    for by_h in algs.values():
        for h, st in by_h.items():
            if st["best"] is not None:
                methods.setdefault(h, st["best_method"])
    if not methods:
        for by_h in algs.values():
            for h, st in by_h.items():
                methods.setdefault(h, st["best_method"])
    return dict(sorted(methods.items()))


def _best_text(algs: dict, swept: str) -> str:
    """``best in class by <method>`` for the table's header; per row when it varies."""
    methods = _best_methods(algs)
    distinct = list(dict.fromkeys(methods.values()))
    if len(distinct) == 1:
        m = distinct[0]
        return f"best in class {m}" if m.startswith("unavailable") else f"best in class by {m}"
    name = "H" if swept == "horizon" else swept
    parts = [f"{m} ({name}={', '.join(str(h) for h, mm in methods.items() if mm == m)})" for m in distinct]
    return "best in class by " + "; ".join(parts)


def _title(task: str, args) -> str:
    arg_txt = ", ".join(f"{k}={_short(v)}" for k, v in args)
    return f"{task} ({arg_txt})" if arg_txt else task


def format_tables(summary: dict, notes: list[str] | None = None) -> str:
    """The report's text: per task group, a table per metric (rows: the swept argument, with the
    horizon H beside it where it differs), then the growth exponents. ``notes`` are printed
    first (e.g. duplicates that were counted once)."""
    lines = list(notes or [])
    for (task, args), algs in summary.items():
        names = list(algs)
        rows = sorted({h for a in algs.values() for h in a})
        any_st = next(iter(next(iter(algs.values())).values()))
        swept = any_st["swept"]
        horizon_of = {h: st["H"] for a in algs.values() for h, st in a.items()}
        label = "H" if swept == "horizon" else swept
        show_h = any(horizon_of[h] != h for h in rows)
        method, best = group_best(algs)
        best_est = {h: any(a[h]["estimated"]["best"] for a in algs.values() if h in a and a[h]["best"] is not None)
                    for h in rows}
        flags = {}  # flag text -> footnote number
        lines.append(f"task {_title(task, args)}; {_best_text(algs, swept)}; "
                     f"mean over seeds [95% interval]; ~ marks estimated numbers")
        for metric, title in TABLES:
            if not any(st.get(metric) for by_h in algs.values() for st in by_h.values()):
                if metric == "approx_factor":
                    why = method.split(":", 1)[1].strip() if method.startswith("unavailable:") else method
                    bests = [st["best"] for by_h in algs.values() for st in by_h.values() if st["best"] is not None]
                    if bests and max(bests) <= WELL_SPECIFIED_BELOW:
                        why = (f"the best in class is below {WELL_SPECIFIED_BELOW:g} at every row: the class (nearly) "
                               "contains the expert, so C(H) is undefined")
                    lines += ["", f"approximation factor C(H): not available ({why})"]
                continue
            if metric != "exact_match" and metric in dict(DIAGNOSTICS) and all(
                    st.get(metric) == st.get("exact_match") for by_h in algs.values() for st in by_h.values()):
                continue  # the same numbers as the exact match (e.g. parity without a chain of thought)
            lines.append("")
            lines.append(title)
            widths = {n: max(22, len(n)) for n in names}
            lw = max(6, len(label))
            header = f"{label:>{lw}} | " + (f"{'H':>6} | " if show_h else "") + " | ".join(f"{n:^{widths[n]}}" for n in names)
            per_class = best_by_class(algs)
            best_cols = ([("best in class", None)] if len(per_class) <= 1
                         else [(f"best: {class_label(c, per_class)}", c) for c in per_class])
            if metric == "hellinger2":
                header += "".join(f" | {title:^13}" for title, _ in best_cols)
            lines.append(header)
            lines.append("-" * len(header))
            for h in rows:
                row = f"{h:>{lw}} | " + (f"{horizon_of[h]:>6} | " if show_h else "")
                cells = []
                for n in names:
                    st = algs[n].get(h)
                    v = st.get(metric) if st else None
                    if v is None:
                        cells.append(f"{'n/a':^{widths[n]}}")
                        continue
                    mark = "~" if st["estimated"][metric] else ""
                    txt = f"{mark}{_fmt(v['mean'])} [{_fmt(v['lo'])}, {_fmt(v['hi'])}]"
                    if metric == "approx_factor" and st["flags"]:
                        refs = []
                        for _, flag in st["flags"]:
                            refs.append(flags.setdefault(flag, len(flags) + 1))
                        txt += " " + "".join(f"({k})" for k in sorted(set(refs)))
                    cells.append(f"{txt:^{widths[n]}}")
                row += " | ".join(cells)
                if metric == "hellinger2":
                    for title, cls in best_cols:
                        if cls is None:
                            b, est = best.get(h), best_est[h]
                        else:
                            b, est = per_class[cls].get(h, (None, False))
                        b_txt = ("~" if b is not None and est else "") + _fmt(b)
                        row += f" | {b_txt:^{max(13, len(title))}}"
                lines.append(row)
            if metric == "approx_factor" and flags:
                for flag, k in flags.items():
                    where = [f"{n} {label}={h} seed {seed}" for n in names for h in rows if h in algs[n]
                             for seed, f in algs[n][h]["flags"] if f == flag]
                    lines.append(f"  ({k}) {flag}: {', '.join(where)}")
        has_c = any(st.get("approx_factor") for by_h in algs.values() for st in by_h.values())
        lines.append("")
        if has_c:
            lines.append("growth exponent b of C(H) ~ H^b (least squares on log-log over the horizons):")
        for n in names if has_c else []:
            hs = sorted(algs[n])
            vals = [algs[n][h]["approx_factor"]["mean"] if algs[n][h].get("approx_factor") else np.nan for h in hs]
            horizons = [horizon_of[h] for h in hs]
            fit = growth_exponent(horizons, vals)
            usable = int(np.sum(np.isfinite(vals) & (np.asarray(vals) > 0)))
            if fit is not None:
                txt = f"b = {fit[0]:.2f} [{fit[1]:.2f}, {fit[2]:.2f}]"
            elif usable == 0:  # e.g. a neural policy class: the task's best in class is not its own
                txt = "n/a (no C(H) at any horizon)"
            elif len({h for h, v in zip(horizons, vals) if np.isfinite(v) and v > 0}) < usable:
                txt = f"n/a (H does not vary with {swept})" if len(set(horizons)) == 1 else \
                    "n/a (C(H) at fewer than 3 distinct horizons)"
            else:
                txt = f"n/a (C(H) at {usable} horizon(s); needs 3)"
            lines.append(f"  {n:<24} {txt}" if len(n) < 24 else f"  {n}  {txt}")
        lines.append("")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.3f}"


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str, tight: bool = True) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically (never half-written) and without a
    Software tag (the same figure, the same bytes); ``tight`` crops to what is drawn."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight" if tight else None, metadata={"Software": None})


def band(by_h: dict, metric: str) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """``(horizons, mean, lo, hi)`` of one algorithm's summary (``summarise``) for ``metric``,
    over the horizons that have it: a curve and its 95% band."""
    hs = sorted(h for h in by_h if by_h[h].get(metric))
    stats = [by_h[h][metric] for h in hs]
    return hs, *(np.array([st[key] for st in stats]) for key in ("mean", "lo", "hi"))


def _safe_name(text: str) -> str:
    """A file-name part: letters, digits, ``.``, ``_`` and ``-`` only (no ``:`` or ``/``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "results"


def _overlaps(a: tuple, b: tuple, rtol: float = 0.02) -> bool:
    """Do two curves ``(xs, means)`` coincide on the plot (same points, means within ``rtol``,
    closer than a marker's width)?"""
    return list(a[0]) == list(b[0]) and np.allclose(a[1], b[1], rtol=rtol, atol=0.0)


MARKERS = "osD^vP*X"


def plot(summary: dict, out_dir: str, stem: str = "results") -> list[str]:
    """Plots per task group, named ``<stem>-<metric>.png`` after the results file's stem
    (``<stem>-<task>-<k>-<metric>.png`` when the file holds several groups): C(H) and
    D_H^2(H) on log-log axes, the diagnostics on a linear axis, a line per algorithm with its
    95% band. Monte-Carlo points have open markers; a curve drawn over an earlier one says so in
    the legend; bands are clipped to the plotted range (the tables keep the numbers)."""
    plt = pyplot()

    written = []
    stem = _safe_name(stem)
    for gi, ((task, args), algs) in enumerate(summary.items()):
        prefix = stem if len(summary) == 1 else f"{stem}-{_safe_name(task)}-{gi}"
        any_st = next(iter(next(iter(algs.values())).values()))
        swept = any_st["swept"]
        horizon_of = {h: st["H"] for a in algs.values() for h, st in a.items()}
        for metric, ylabel in (
            ("approx_factor", "approximation factor C(H)"),
            ("hellinger2", r"squared Hellinger $D_H^2$ to the expert"),
            *((m, title.split(" (")[0]) for m, title in DIAGNOSTICS),
        ):
            if not any(st.get(metric) for by_h in algs.values() for st in by_h.values()):
                continue  # nothing to draw (e.g. no C(H) for neural classes)
            log_y = metric in ("approx_factor", "hellinger2")
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            _, best = group_best(algs)
            styles = ["-", "--", "-.", ":"]
            curves, drawn, any_mc = {}, [], False
            for k, (n, by_h) in enumerate(algs.items()):
                hs, mean, lo, hi = band(by_h, metric)
                if hs:
                    curves[n] = (hs, mean, lo, hi, [by_h[h]["estimated"][metric] for h in hs])
            means = np.concatenate([c[1] for c in curves.values()])
            if metric == "hellinger2":
                means = np.concatenate([means, [v for v in best.values() if v is not None]])
            if log_y:
                pos = means[means > 0]
                floor, ceil = (pos.min() / 10, pos.max() * 10) if len(pos) else (1e-3, 1.0)
            else:
                floor, ceil = 0.0, 1.0
            shown = [means] + [np.clip(c[j], floor, ceil) for c in curves.values() for j in (2, 3)]
            shown = np.concatenate(shown)
            for k, (n, (hs, mean, lo, hi, mc)) in enumerate(curves.items()):
                marker = MARKERS[k % len(MARKERS)]
                over = [m for m, c in drawn if _overlaps((hs, mean), c)]
                label = f"{n} (overlaps {over[0]})" if over else n
                # a curve on top of an earlier one: bigger markers drawn beneath it, so both show
                (line,) = ax.plot(hs, mean, styles[k % len(styles)], lw=1.2, label=label, marker=marker,
                                  ms=7 if over else 4, markevery=[i for i, e in enumerate(mc) if not e] or None,
                                  zorder=1.9 if over else 2)
                if not any(not e for e in mc):
                    line.set_marker("None")
                open_pts = [i for i, e in enumerate(mc) if e]
                if open_pts:
                    any_mc = True
                    ax.plot([hs[i] for i in open_pts], [mean[i] for i in open_pts], ls="none", marker=marker,
                            ms=7 if over else 5, mfc="white", mec=line.get_color())
                if np.any(hi > lo):
                    ax.fill_between(hs, np.clip(lo, floor, ceil), np.clip(hi, floor, ceil), color=line.get_color(),
                                    alpha=0.2, lw=0)
                drawn.append((n, (hs, mean)))
            if metric == "hellinger2" and best:
                per_class = best_by_class(algs)
                for j, (cls, vals) in enumerate(per_class.items()):
                    hs = [h for h in sorted(vals) if vals[h][0] > 0]
                    label = "best in class" if len(per_class) == 1 else f"best in class: {class_label(cls, per_class)}"
                    ax.plot(hs, [vals[h][0] for h in hs], ["--", ":", "-."][j % 3], color="k", lw=1, label=label)
            if any_mc:
                ax.plot([], [], ls="none", marker="o", mfc="white", mec="gray", label="open marker: Monte-Carlo estimate")
            xs = sorted({h for c in curves.values() for h in c[0]})
            if len(xs) > 1 and xs[0] > 0 and xs[-1] / xs[0] > 4:
                ax.set_xscale("log")
            if log_y:  # the means and the bands, each band cut at 10x beyond the means
                ax.set_yscale("log")
                ax.set_ylim(shown[shown > 0].min() / 1.3, shown.max() * 1.3)
            else:
                ax.set_ylim(-0.02, 1.02)
            ticks = xs if len(xs) <= 12 else xs[:: math.ceil(len(xs) / 12)]
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            if swept == "horizon":
                ax.set_xlabel("horizon H")
            elif all(horizon_of[h] == h for h in xs):
                ax.set_xlabel(f"{swept} (= horizon H)")
            else:
                ax.set_xlabel(f"{swept} (H = {', '.join(str(horizon_of[h]) for h in xs)})")
            ax.set_ylabel(ylabel)
            ax.set_title(_title(task, args), fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            path = os.path.join(out_dir, f"{prefix}-{metric}.png")
            save_png(fig, path)
            plt.close(fig)
            written.append(path)
    return written


def _short(v: str) -> str:
    try:
        return f"{float(v):.4g}"
    except ValueError:
        return v


def report(path: str, plots_dir: str | None = None) -> tuple[str, list[str]]:
    """``(text, written plot paths)`` for the results file ``path``; plots go to ``plots_dir``
    (none if ``None``), named after the file's stem. A record that appears more than once (the
    same cell and seed) counts once, and the text says so first."""
    if not os.path.exists(path):
        raise ValueError(f"results file {path!r} does not exist")
    numbered = ResultsFile(path).numbered_records()
    if not numbered:
        raise ValueError(f"{path} holds no results yet")
    records = [rec for _, rec in numbered]
    _, dups = dedupe(records)
    notes = []
    if dups:
        where = ", ".join(f"line {numbered[i][0]}" for i in dups[:10]) + (", ..." if len(dups) > 10 else "")
        notes = [f"warning: {path}: {len(dups)} duplicate record(s) of a cell already in the file ({where}), "
                 "each counted once", ""]
    summary = summarise(records)
    text = format_tables(summary, notes)
    stem = os.path.splitext(os.path.basename(path))[0]
    written = plot(summary, plots_dir, stem) if plots_dir else []
    return text, written
