"""A sweep's report, read back from what keras-tuner recorded (`<stage>/trial_*/trial.json`) and from
cnnapp's record of each trial (`trials/<stage>-<id>/sweep_trial.json`: the worker, the attempts and a
failure's reason, which keras-tuner's gRPC messages do not carry):

    sweep.json   every trial (values, status, accuracy, min/max under CV, test accuracy, epochs,
                 seconds, worker) and the best configuration with its command line
    sweep.md     one table per stage, best first
    sweep.csv    one row per trial
    region_size.png, feature_maps.png   accuracy against the swept size (Zhang & Wallace's figures),
                 with min-max bars under CV, when those stages ran
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from cnnapp.sweep.plan import PLOTS

log = logging.getLogger(__name__)
NUMBERS = ("accuracy", "min", "max", "test_accuracy", "epochs", "seconds")


def plain(values: dict) -> dict:
    """JSON-ready values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def unplain(values: dict) -> dict:
    """`plain`'s inverse: lists (int lists such as region sizes) back to tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def show(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def collect(sweep_dir: Path, stage, int_lists) -> list[dict]:
    """The trials of one stage, as rows: keras-tuner's record merged with cnnapp's."""
    from keras_tuner.engine.trial import Trial
    from cnnapp.sweep.spec import decode
    rows = []
    for path in sorted((sweep_dir / stage.name).glob("trial_*/trial.json")):
        trial = Trial.load(str(path))
        values = decode(trial.hyperparameters.values, int_lists)
        name = f"{stage.name}-{trial.trial_id}"
        record = _read(sweep_dir / "trials" / name / "sweep_trial.json")
        row = {"stage": stage.name, "trial": name, "trial_id": trial.trial_id, "status": trial.status,
               "values": plain(values), "varied": {p: show(values.get(p)) for p in stage.varied}}
        for metric in NUMBERS:
            if trial.metrics.exists(metric):
                row[metric] = round(float(trial.metrics.get_last_value(metric)), 4 if metric != "seconds" else 1)
        if "seconds" not in row and record.get("seconds") is not None:   # a failed trial's time
            row["seconds"] = round(float(record["seconds"]), 1)
        row["tuner_id"] = record.get("tuner_id")
        row["attempts"] = record.get("attempts")
        reason = record.get("reason") if trial.status != "COMPLETED" else None
        row["reason"] = reason or (trial.message if trial.status in ("FAILED", "INVALID") else None)
        row["run_dir"] = str(sweep_dir / "trials" / name)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["status"] != "COMPLETED", -r.get("accuracy", -1.0), r["trial_id"]))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def objective_text(train) -> str:
    if train.cv:
        return (f"mean accuracy of stratified {train.cv}-fold cross-validation x {train.repeats} seed(s) "
                f"(min, max over {'repeats' if train.repeats > 1 else 'folds'})")
    return "dev (validation) accuracy of the best epoch; the test accuracy is shown, never chosen on"


def write(plan, stages, *, command_for=None) -> dict:
    """Write sweep.json, sweep.md, sweep.csv and the plots for the stages that ran; return the summary."""
    sweep_dir = plan.sweep_dir
    per_stage = [(stage, collect(sweep_dir, stage, plan.int_lists)) for stage in stages]
    trials = [row for _, rows in per_stage for row in rows]
    last = per_stage[-1][1] if per_stage else []
    best = next((dict(r) for r in last if r["status"] == "COMPLETED"), None)
    if best is not None and command_for is not None:
        best["command"] = command_for(unplain(best["values"]))
    files = [sweep_dir / "sweep.json", sweep_dir / "sweep.md", sweep_dir / "sweep.csv"]
    for stage, rows in per_stage:
        if stage.name in PLOTS and plot_stage(rows, *PLOTS[stage.name], sweep_dir):
            files.append(sweep_dir / PLOTS[stage.name][1])
    stage_info = [{"name": s.name, "method": s.method, "varied": {p.name: p.describe() for p in s.params},
                   "fixed": dict(s.fixed), "trials": len(rows),
                   "completed": sum(r["status"] == "COMPLETED" for r in rows)} for s, rows in per_stage]
    summary = {"name": plan.name, "model": plan.model_name, "base_options": plain(plan.model.options),
               "objective": objective_text(plan.train), "stages": stage_info, "trials": trials, "best": best,
               "files": [str(f) for f in files]}
    (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (sweep_dir / "sweep.md").write_text(markdown(summary, per_stage), encoding="utf-8")
    write_csv(sweep_dir / "sweep.csv", trials)
    return summary


def markdown(summary: dict, per_stage) -> str:
    lines = [f"# Sweep {summary['name']} ({summary['model']})", "",
             f"Objective: {summary['objective']}.", ""]
    if summary["base_options"]:
        lines += ["Base options: " + ", ".join(f"{k}={show(v)}" for k, v in summary["base_options"].items()), ""]
    for info, (stage, rows) in zip(summary["stages"], per_stage):
        varied = "; ".join(f"{k}: {v}" for k, v in info["varied"].items())
        lines += [f"## Stage {stage.name} ({stage.method}: {varied})", ""]
        if info["fixed"]:
            lines += ["Fixed from earlier stages: " + ", ".join(f"{k}={v}" for k, v in info["fixed"].items()), ""]
        lines += table(rows, stage.varied) + [""]
    best = summary["best"]
    if best:
        lines += [f"Best: {best['trial']} ({', '.join(f'{k}={show(v)}' for k, v in best['values'].items())}), "
                  f"accuracy {best['accuracy']:.4f}", ""]
        if best.get("command"):
            lines += ["```", best["command"], "```", ""]
    return "\n".join(lines)


def table(rows: list[dict], varied) -> list[str]:
    cv = any("min" in r for r in rows)
    head = ["trial", *varied, "accuracy", *(["min", "max"] if cv else ["test acc."]), "epochs", "seconds", "worker",
            "status"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def num(row, key, digits=4):
        return f"{row[key]:.{digits}f}" if key in row else ""
    for r in rows:
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        cells = [r["trial"], *(r["varied"].get(p, "") for p in varied), num(r, "accuracy"),
                 *([num(r, "min"), num(r, "max")] if cv else [num(r, "test_accuracy")]), num(r, "epochs", 1),
                 num(r, "seconds", 1), r.get("tuner_id") or "", status.replace("|", "/")]
        out.append("| " + " | ".join(cells) + " |")
    return out


def write_csv(path: Path, trials: list[dict]) -> None:
    names = sorted({k for t in trials for k in t["values"]})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["stage", "trial", "status", *names, *NUMBERS, "worker", "attempts", "reason"])
        for t in trials:
            w.writerow([t["stage"], t["trial"], t["status"], *(show(t["values"].get(n, "")) for n in names),
                        *(t.get(k, "") for k in NUMBERS), t.get("tuner_id") or "", t.get("attempts") or "",
                        t.get("reason") or ""])


def plot_stage(rows: list[dict], param: str, filename: str, sweep_dir: Path) -> bool:
    """Accuracy against one size (a single region size, or feature maps), with min-max bars under CV."""
    points = []
    for r in rows:
        value = r["values"].get(param)
        value = value[0] if isinstance(value, list) and len(value) == 1 else value
        if r["status"] == "COMPLETED" and isinstance(value, int):
            points.append((value, r["accuracy"], r.get("min", r["accuracy"]), r.get("max", r["accuracy"])))
    if not points:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points.sort()
    x, acc, lo, hi = (list(c) for c in zip(*points))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(x, acc, yerr=[[a - b for a, b in zip(acc, lo)], [c - a for a, c in zip(acc, hi)]], fmt="o-", capsize=4)
    if param == "feature_maps":
        ax.set_xscale("log")
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel("region size" if param == "region_sizes" else param.replace("_", " "))
    ax.set_ylabel("accuracy")
    cv = any(r.get("min") is not None for r in rows)
    ax.set_title("CV mean accuracy (bars: min to max)" if cv else "dev accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sweep_dir / filename, dpi=100)
    plt.close(fig)
    return True
