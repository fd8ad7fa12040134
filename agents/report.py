"""Tables and plots from a sweep's results file.

For every (task, task arguments other than the swept one) group: a table of the approximation
factor C(H) and of D_H^2(H) per algorithm (mean over seeds with a 95% t-interval over seeds,
or the Monte-Carlo interval when there is one seed), the greedy exact match where the task's
expert is deterministic, the fitted growth exponent ``b`` of ``C(H) ~ H^b`` (least squares on
log-log, 95% interval), and a PNG plot of each (log-log; exact match on a linear axis).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np

from ar_envs.fileio import atomic_path

from .sweep import ResultsFile

# two-sided 95% Student-t quantiles by degrees of freedom (beyond 30: the normal 1.96)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    if df <= 0:
        return math.inf
    keys = sorted(k for k in _T95 if k <= df)
    return _T95[keys[-1]] if df <= 30 else 1.96


def _group_key(rec):
    """Records of one table: same task, same arguments as given to the sweep (defaults that
    depend on the swept argument, e.g. parity's subset size, vary along the rows)."""
    varied = {"horizon", *rec.get("sweep_arg", {})}  # the swept argument is the table's rows
    given = rec.get("task_kwargs", rec["task_args"])
    args = {k: v for k, v in given.items() if k not in varied}
    return rec["task"], tuple(sorted((k, str(v)) for k, v in args.items()))


def summarise(records: list[dict]) -> dict:
    """``{(task, args): {algorithm: {horizon: stats}}}`` with mean / lo / hi / exact per metric."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    cells = defaultdict(list)
    for r in records:
        cells[(_group_key(r), r["algorithm"], r["horizon"])].append(r)
    for (g, alg, h), recs in cells.items():
        stats = {"seeds": len(recs), "exact": all(r["exact"] for r in recs),
                 "best": recs[0]["best_in_class_hellinger2"], "best_method": recs[0]["best_in_class_method"]}
        for r in recs:  # reasoning diagnostics (deterministic experts): greedy exact match
            if r.get("diagnostics") and r["diagnostics"].get("exact_match") is not None:
                r["exact_match"] = r["diagnostics"]["exact_match"]
        for metric, ci_key in (("approx_factor", "approx_factor_ci95"), ("hellinger2", None), ("tv", None),
                               ("regret", None), ("exact_match", None)):
            vals = np.array([r[metric] for r in recs if r.get(metric) is not None], dtype=np.float64)
            if len(vals) == 0:
                stats[metric] = None
                continue
            mean = float(vals.mean())
            if len(vals) > 1:
                half = t95(len(vals) - 1) * float(vals.std(ddof=1)) / math.sqrt(len(vals))
                lo, hi = mean - half, mean + half
            else:
                ci = recs[0].get(ci_key) if ci_key else recs[0].get("ci95", {}).get(metric)
                lo, hi = (ci if ci else (mean, mean))
            stats[metric] = {"mean": mean, "lo": lo, "hi": hi}
        out[g][alg][h] = stats
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
    ("exact_match", "exact match of the greedy roll-out (reasoning diagnostics)"),
)


def group_best(algs: dict) -> tuple[str, dict]:
    """``(method, {horizon: best-in-class D_H^2})`` of a task group: per horizon, the first
    algorithm's record that has one (neural policy classes carry none)."""
    best, method = {}, None
    for by_h in algs.values():
        for h, st in by_h.items():
            if st["best"] is not None:
                best.setdefault(h, st["best"])
                method = method or st["best_method"]
    if method is None:
        method = next(iter(next(iter(algs.values())).values()))["best_method"]
    return method, best


def format_tables(summary: dict) -> str:
    lines = []
    for (task, args), algs in summary.items():
        arg_txt = ", ".join(f"{k}={_short(v)}" for k, v in args)
        names = list(algs)
        horizons = sorted({h for a in algs.values() for h in a})
        method, best = group_best(algs)
        lines.append(f"task {task} ({arg_txt}); best in class by {method}; "
                     f"mean over seeds [95% interval]; ~ marks Monte-Carlo numbers")
        for metric, title in TABLES:
            if not any(st.get(metric) for by_h in algs.values() for st in by_h.values()):
                if metric == "approx_factor":
                    lines += ["", f"approximation factor C(H): not available ({method})"]
                continue
            lines.append("")
            lines.append(title)
            widths = {n: max(22, len(n)) for n in names}
            header = f"{'H':>6} | " + " | ".join(f"{n:^{widths[n]}}" for n in names)
            if metric == "hellinger2":
                header += f" | {'best in class':^13}"
            lines.append(header)
            lines.append("-" * len(header))
            for h in horizons:
                row = f"{h:>6} | "
                cells = []
                for n in names:
                    st = algs[n].get(h)
                    v = st.get(metric) if st else None
                    if v is None:
                        cells.append(f"{'n/a':^{widths[n]}}")
                        continue
                    mark = "" if st["exact"] else "~"
                    txt = f"{mark}{_fmt(v['mean'])} [{_fmt(v['lo'])}, {_fmt(v['hi'])}]"
                    cells.append(f"{txt:^{widths[n]}}")
                row += " | ".join(cells)
                if metric == "hellinger2":
                    row += f" | {_fmt(best.get(h)):^13}"
                lines.append(row)
        has_c = any(st.get("approx_factor") for by_h in algs.values() for st in by_h.values())
        lines.append("")
        if has_c:
            lines.append("growth exponent b of C(H) ~ H^b (least squares on log-log over the horizons):")
        for n in names if has_c else []:
            hs = sorted(algs[n])
            vals = [algs[n][h]["approx_factor"]["mean"] if algs[n][h].get("approx_factor") else np.nan for h in hs]
            fit = growth_exponent(hs, vals)
            usable = int(np.sum(np.isfinite(vals) & (np.asarray(vals) > 0)))
            if fit is not None:
                txt = f"b = {fit[0]:.2f} [{fit[1]:.2f}, {fit[2]:.2f}]"
            elif usable == 0:  # e.g. a neural policy class: the task's best in class is not its own
                txt = "n/a (no C(H) at any horizon)"
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


def plot(summary: dict, out_dir: str) -> list[str]:
    """Two log-log plots per task group: C(H) and D_H^2(H), a line per algorithm, 95% bands."""
    plt = pyplot()

    written = []
    for gi, ((task, args), algs) in enumerate(summary.items()):
        suffix = "" if len(summary) == 1 else f"-{gi}"
        for metric, ylabel, fname in (
            ("approx_factor", "approximation factor C(H)", f"{task}{suffix}-approx_factor.png"),
            ("hellinger2", r"squared Hellinger $D_H^2$ to the expert", f"{task}{suffix}-hellinger2.png"),
            ("exact_match", "exact match (greedy roll-out)", f"{task}{suffix}-exact_match.png"),
        ):
            if not any(st.get(metric) for by_h in algs.values() for st in by_h.values()):
                continue  # nothing to draw (e.g. no C(H) for neural classes)
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            _, best = group_best(algs)
            styles = ["-", "--", "-.", ":"]
            for k, (n, by_h) in enumerate(algs.items()):
                hs, mean, lo, hi = band(by_h, metric)
                if not hs:
                    continue
                (line,) = ax.plot(hs, mean, styles[k % len(styles)], marker="o", ms=3, label=n)
                if np.any(hi > lo):
                    ax.fill_between(hs, np.maximum(lo, mean * 1e-3), hi, color=line.get_color(), alpha=0.2, lw=0)
            if metric == "hellinger2" and best:
                hs = sorted(best)
                ax.plot(hs, [best[h] for h in hs], "k--", lw=1, label="best in class")
            ax.set_xscale("log")
            if metric != "exact_match":
                ax.set_yscale("log")
            ax.set_xlabel("horizon H")
            ax.set_ylabel(ylabel)
            arg_txt = ", ".join(f"{k}={_short(v)}" for k, v in args)
            ax.set_title(f"{task} ({arg_txt})", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            path = os.path.join(out_dir, fname)
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
    if not os.path.exists(path):
        raise ValueError(f"results file {path!r} does not exist")
    records = ResultsFile(path).records()
    if not records:
        raise ValueError(f"{path} holds no results yet")
    summary = summarise(records)
    text = format_tables(summary)
    written = plot(summary, plots_dir) if plots_dir else []
    return text, written
