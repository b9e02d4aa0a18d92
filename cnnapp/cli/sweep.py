"""`cnnapp sweep text|image`: a hyperparameter sweep on keras-tuner over the train commands' options.

    cnnapp sweep text --feature-maps 100 --epochs 5                  # Zhang & Wallace's staged plan
    cnnapp sweep text --spec space.json --cv 10                      # a grid/random space from a file
    cnnapp sweep text --spec space.json --workers 2                  # one chief oracle + 2 local workers
    KERASTUNER_TUNER_ID=worker1 KERASTUNER_ORACLE_IP=host KERASTUNER_ORACLE_PORT=8000 cnnapp sweep text ...

The data, task, model and training options are train-text's / train-image's: what the user sets is
the base every trial starts from. The options given here (re-rendered from the parsed values) start
the local chief and workers, and the best trial's values turn into a ready `cnnapp train-...` line.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import click

from cnnapp.cli.errors import library_errors
from cnnapp.cli.options import (IMAGE_MODEL_FIELDS, NAMES, TEXT_MODEL_FIELDS, ImageSize, ModelArg, checked_model_choice,
                                class_names_option, image_data_options, image_model_options, options, text_data_options,
                                text_model_options, text_task_options, train_config, train_options)

# Options of the sweep itself: not passed on to a train command line.
SWEEP_ONLY = ("plan", "spec", "stages", "region_range", "max_trials", "sweep_dir", "workers", "export_best", "fresh",
              "export", "launched")
# Options the launcher does not pass to its chief and workers (the launcher itself does these).
LAUNCHER_ONLY = ("workers", "export_best", "fresh", "sweep_dir", "launched")

sweep_options = options(
    click.option("--plan", type=click.Choice(["zhang-wallace"]), default=None,
                 help="A built-in plan: Zhang & Wallace's staged line search (region size, combinations, feature "
                      "maps, dropout, max-norm). [default for text without --spec]"),
    click.option("--spec", default=None, metavar="FILE",
                 help="A JSON (or .toml) search space: {\"method\": \"grid\"|\"random\", \"max_trials\": N, "
                      "\"params\": "
                      "{name: [values] | {\"min\", \"max\", \"step\", \"sampling\"} | value}}; names are the model's "
                      "options and learning_rate, batch_size, optimizer, epochs, label_smoothing, lr_schedule, "
                      "patience, class_weight (balanced | none)."),
    click.option("--stages", type=NAMES, default=None,
                 help="Plan stages to run, in order: region,combos,maps,dropout,max-norm. [default: all]"),
    click.option("--region-range", default="1-10", show_default=True,
                 help="Single region sizes the plan's first stage tries."),
    click.option("--max-trials", type=click.IntRange(min=1), default=None,
                 help="At most this many trials (per stage of a plan). [default: the whole grid]"),
    click.option("--sweep-dir", type=click.Path(file_okay=False), default=None,
                 help="Where the keras-tuner projects, trials and reports go. [default: RUN_DIR/<name>/sweep]"),
    click.option("--workers", type=click.IntRange(min=1), default=None,
                 help="Run on this many local worker processes and one chief oracle (gRPC on a free 127.0.0.1 "
                      "port). Without it, KERASTUNER_TUNER_ID/_ORACLE_IP/_ORACLE_PORT make this process the chief "
                      "or a worker of a sweep across machines."),
    click.option("--export-best", is_flag=True,
                 help="After the sweep, train the best configuration (the printed command) and export it "
                      "under --name."),
    click.option("--launched", is_flag=True, hidden=True,
                 help="Set by --workers on its chief and workers: the launcher prints the report, not they."),
)


@click.group("sweep")
def sweep():
    """Hyperparameter sweeps on keras-tuner: a staged plan or a spec file, resumable, on several processes.

    Rerunning the same command resumes the sweep (finished trials are not run again); --fresh starts
    over. Outputs in the sweep folder: sweep.md, sweep.csv, sweep.json, region_size.png, feature_maps.png.
    """


@sweep.command("text")
@text_data_options
@class_names_option
@text_task_options
@text_model_options
@train_options("text")
@sweep_options
@library_errors
def sweep_text(**kw):
    """Sweep the sentence CNN (Zhang & Wallace's plan by default)."""
    from cnnapp.cli.train import text_task
    execute("text", kw, task_of=text_task, fields=TEXT_MODEL_FIELDS)


@sweep.command("image")
@image_data_options
@class_names_option
@image_model_options
@train_options("image")
@sweep_options
@library_errors
def sweep_image(**kw):
    """Sweep an image model over the space of a --spec file."""
    from cnnapp.cli.train import image_task
    execute("image", kw, task_of=image_task, fields=IMAGE_MODEL_FIELDS)


def execute(kind: str, kw: dict, *, task_of, fields) -> None:
    ctx = click.get_current_context()
    sw = {k: kw.pop(k) for k in ("plan", "spec", "stages", "region_range", "max_trials", "sweep_dir", "workers",
                                 "export_best", "launched")}
    if sw["plan"] and sw["spec"]:
        raise click.UsageError("give --plan or --spec, not both")
    tta = kw.pop("tta", None)
    known = {"input_shape": (1, 1, int(kw["channels"]))} if kind == "image" and kw.get("channels") else {}
    model = checked_model_choice(kw, fields, kind=kind, data_args=known)
    train = train_config(kw)
    if tta is not None:
        import dataclasses
        train = dataclasses.replace(train, tta=tta)
    from cnnapp.sweep.search import discard, export_best, participant_from, prepare, read_outcome, run_sweep
    participant = participant_from(os.environ)
    if sw["workers"] and participant is not None:
        raise click.UsageError("--workers starts its own chief and workers; unset KERASTUNER_* or drop --workers")
    plan = prepare(task_of(kw), train=train, model=model, spec=sw["spec"], stages=sw["stages"],
                   region_range=sw["region_range"], max_trials=sw["max_trials"], sweep_dir=sw["sweep_dir"])
    if train.fresh and (participant is None or participant.is_chief):
        discard(plan)

    def command_for(values: dict) -> str:
        return train_command(ctx, kind, values)

    if sw["workers"]:
        from cnnapp.training.cluster import run_local_sweep
        code = run_local_sweep(sw["workers"], [kind, *rendered(ctx, skip=LAUNCHER_ONLY),
                                               "--sweep-dir", str(plan.sweep_dir), "--launched"])
        if code:
            sys.exit(code)
        outcome = read_outcome(plan.sweep_dir)
    else:
        outcome = run_sweep(plan, participant=participant, command_for=command_for)
        if participant is not None and not participant.is_chief:
            click.echo(f"worker {participant.tuner_id}: no trials left; the chief writes the report")
            return
        if sw["launched"]:
            click.echo(f"chief: the sweep is done; {outcome.sweep_dir / 'sweep.md'}")
            return
    show(outcome)
    if sw["export_best"]:
        from cnnapp.cli.train import report
        report(export_best(plan, outcome.best))


def show(outcome) -> None:
    """The tables (sweep.md), the best trial and its command line, the files."""
    md = outcome.sweep_dir / "sweep.md"
    if md.exists():
        click.echo(md.read_text(encoding="utf-8").rstrip())
        click.echo("")
    for stage in outcome.stages:
        click.echo(f"stage {stage['name']}: {stage['completed']} of {stage['trials']} trial(s) completed")
    best = outcome.best
    if best:
        click.echo(f"best: {best['trial']} accuracy {best['accuracy']:.4f} "
                   f"({', '.join(f'{k}={_text(v)}' for k, v in best['values'].items())})")
        if best.get("command"):
            click.echo(f"command: {best['command']}")
    click.echo(f"sweep directory: {outcome.sweep_dir}")
    click.echo("report: " + ", ".join(str(f) for f in outcome.files))


def rendered(ctx: click.Context, *, skip=(), overrides: dict | None = None) -> list[str]:
    """The command's options as argv, from the parsed values the user set (not the defaults), minus
    `skip`, with `overrides` ({param name: value}) set."""
    overrides = dict(overrides or {})
    argv: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip:
            continue
        if param.name in overrides:
            argv += option_argv(param, overrides.pop(param.name))
        elif ctx.get_parameter_source(param.name) not in (click.core.ParameterSource.DEFAULT,
                                                           click.core.ParameterSource.DEFAULT_MAP, None):
            argv += option_argv(param, ctx.params[param.name])
    for name, value in overrides.items():   # model options without an option of their own
        argv += ["--model-arg", f"{name}={json.dumps(list(value) if isinstance(value, tuple) else value)}"]
    return argv


def option_argv(param: click.Option, value) -> list[str]:
    if param.is_flag:
        if param.secondary_opts:
            return [param.opts[0] if value else param.secondary_opts[0]]
        return [param.opts[0]] if value else []
    if param.multiple:
        return [item for v in value for item in (param.opts[0], _text(v, param.type))]
    if value is None:
        return []
    return [param.opts[0], _text(value, param.type)]


def _text(value, kind=None) -> str:
    if isinstance(kind, ImageSize) and isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(kind, ModelArg):
        key, v = value
        return f"{key}={json.dumps(list(v) if isinstance(v, tuple) else v)}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def train_command(ctx: click.Context, kind: str, values: dict) -> str:
    """`cnnapp train-<kind> ...`: the sweep's own options and the trial's values."""
    return shlex.join(["cnnapp", f"train-{kind}", *rendered(ctx, skip=SWEEP_ONLY, overrides=values)])
