"""``podium baseline`` and ``podium diagnose`` (also ``python -m baseline`` for torchrun)."""
from __future__ import annotations

from pathlib import Path

import click

from baseline.config import DATA_PATHS, LR_SCHEDULES, PRESETS


@click.command("baseline")
@click.option("--competition", "competition_dir", required=True, type=click.Path(path_type=Path),
              help="The competition directory (holds competition.toml).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="cifar10 (the default): the course notes' exact recipe; demo: a small CPU model for the digits competition.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A preset file (TOML settings, e.g. the best.toml of `podium tune`); options given here override it.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The run directory to write (default runs/<preset>).")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None, help="The global batch (split across torchrun processes).")
@click.option("--lr", type=float, default=None)
@click.option("--momentum", type=float, default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="constant (the course notes'), cosine (set per epoch) or plateau (lowered when the validation loss stalls).")
@click.option("--plateau-factor", type=float, default=None, help="plateau: multiply the rate by this (default 0.1).")
@click.option("--plateau-patience", type=int, default=None,
              help="plateau: the rate drops at the end of the (PATIENCE+1)-th epoch in a row without a lower "
                   "validation loss (default 2; 0: at every such epoch).")
@click.option("--early-stopping", type=int, default=None, metavar="PATIENCE",
              help="Stop after PATIENCE epochs without a lower validation loss (default 0: off).")
@click.option("--restore-best/--no-restore-best", default=None,
              help="Keep the weights of the epoch with the lowest validation loss (report.json names it).")
@click.option("--seed", type=int, default=None)
@click.option("--arch", default=None, help="A torchvision classification model, e.g. resnet50, resnet18.")
@click.option("--weights", default=None, help="torchvision weights name (IMAGENET1K_V1, DEFAULT) or none.")
@click.option("--image-size", type=int, default=None)
@click.option("--crop-padding", type=int, default=None)
@click.option("--val-fraction", type=float, default=None, help="Held out from train, stratified; 0 = the course notes' full-train recipe.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--deterministic/--no-deterministic", default=None, help="Deterministic kernels (slower on GPU).")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the model.")
@click.option("--data-path", type=click.Choice(DATA_PATHS), default=None,
              help="fast: batches transformed on the device; reference: per-image torchvision v2 in a DataLoader.")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast and channels_last on CUDA.")
@click.option("--cudnn-benchmark/--no-cudnn-benchmark", default=None,
              help="cuDNN autotuning on CUDA: times every algorithm for each new layer shape on first use.")
@click.option("--workers", type=int, default=None, help="DataLoader workers of the reference path.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (0: one per core).")
@click.option("--quiet", is_flag=True, help="No progress bars or epoch lines.")
def baseline_command(competition_dir: Path, preset: str | None, config_file: Path | None, out: Path | None,
                     quiet: bool, compile_, **overrides) -> int:
    """Train the reference baseline and write a run directory."""
    from baseline.train import run_baseline

    config = config_from_options(preset, config_file, compile=compile_, progress=False if quiet else None, **overrides)
    out = out if out is not None else Path("runs") / config.preset
    result = run_baseline(config, competition_dir, out)
    if result.out_dir is not None and not quiet:
        kept = next(row for row in result.history if row["epoch"] == result.model_epoch)
        val = f", validation accuracy {kept['val_acc']:.4f}" if kept["val_acc"] is not None else ""
        if result.model_epoch != result.history[-1]["epoch"]:
            val += f" (epoch {result.model_epoch}, the best, restored)"
        click.echo(f"wrote {result.out_dir} in {result.seconds:.1f} s{val}")
    return 0


def config_from_options(preset: str | None, config_file: Path | None, **overrides):
    """The preset (given, else the config file's, else cifar10), then the file's settings, then the options."""
    from baseline.config import read_config_file, resolve_config

    settings: dict = {}
    if config_file is not None:
        file_preset, settings = read_config_file(config_file)
        preset = preset or file_preset
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return resolve_config(preset or "cifar10", **settings)


@click.command("diagnose")
@click.argument("history", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
def diagnose_command(history: Path, as_json: bool) -> int:
    """Print the over/underfitting diagnosis of a history.csv."""
    import json

    from harness.diagnosis import diagnose, read_history

    result = diagnose(read_history(history))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m baseline [OPTIONS]``: the baseline command alone, for torchrun."""
    from harness.cli_runner import run_click

    return run_click(baseline_command, argv, prog_name="python -m baseline")


def _model_options(fn):
    """The options ``podium lr-find`` and ``podium tune`` share with ``podium baseline``."""
    options = [
        click.option("--competition", "competition_dir", required=True, type=click.Path(path_type=Path),
                     help="The competition directory (holds competition.toml)."),
        click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
                     help="The settings to start from (default cifar10, or the --config file's)."),
        click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="A preset file (TOML settings, e.g. best.toml from `podium tune`)."),
        click.option("--arch", default=None, help="A torchvision classification model, e.g. resnet18."),
        click.option("--weights", default=None, help="torchvision weights name or none."),
        click.option("--batch-size", type=int, default=None),
        click.option("--momentum", type=float, default=None),
        click.option("--weight-decay", type=float, default=None),
        click.option("--image-size", type=int, default=None),
        click.option("--crop-padding", type=int, default=None),
        click.option("--val-fraction", type=float, default=None, help="Held out from train, stratified."),
        click.option("--seed", type=int, default=None),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
        click.option("--threads", type=int, default=None, help="CPU threads for torch (0: one per core)."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("lr-find")
@_model_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The folder for lr_find.png and lr_find.json.")
@click.option("--min-lr", type=float, default=1e-7, show_default=True)
@click.option("--max-lr", type=float, default=10.0, show_default=True)
@click.option("--steps", type=int, default=100, show_default=True, help="Mini-batches in the sweep.")
@click.option("--smoothing", type=float, default=0.9, show_default=True,
              help="beta of the loss's exponential moving average.")
@click.option("--diverge", type=float, default=4.0, show_default=True,
              help="Stop when the smoothed loss exceeds this many times its lowest value.")
def lr_find_command(competition_dir: Path, preset, config_file, out: Path, min_lr: float, max_lr: float, steps: int,
                    smoothing: float, diverge: float, quiet: bool, **overrides) -> int:
    """The learning-rate range test: a suggested --lr for `podium baseline`."""
    from baseline.lr_find import SUGGESTION_RULE, run_lr_find

    config = config_from_options(preset, config_file, progress=False if quiet else None, **overrides)
    result = run_lr_find(config, competition_dir, out, min_lr=min_lr, max_lr=max_lr, steps=steps, beta=smoothing,
                         diverge=diverge)
    click.echo(f"swept {len(result.lrs)} of {steps} steps from {min_lr:g} to {result.lrs[-1]:.3g} "
               f"({result.stop_reason}) in {result.seconds:.1f} s")
    if result.suggestion is not None:
        click.echo(f"suggested learning rate: {result.suggestion:.3g}")
        click.echo(f"  rule: {SUGGESTION_RULE}")
    for note in result.notes:
        click.echo(note)
    click.echo(f"wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}")
    return 0


@click.command("tune")
@_model_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, metavar="STUDY",
              help="The study folder: study.db (unless --storage), best.toml, trials.csv, summary.json, plots.")
@click.option("--trials", type=int, required=True,
              help="Finished (complete or pruned) trials the study should hold; run again to resume.")
@click.option("--epochs", type=int, default=None, help="Fixed epochs (when the search space does not search them).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None)
@click.option("--early-stopping", type=int, default=None, metavar="PATIENCE")
@click.option("--restore-best/--no-restore-best", default=None)
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe", show_default=True,
              help="tpe: Bayesian (Optuna's TPE); random; grid: every combination of the space's grid lists.")
@click.option("--sampler-seed", type=int, default=None, help="Seed of the sampler (default: a random one).")
@click.option("--space", "space_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The search space TOML (default: lr, batch size, momentum, weight decay, epochs).")
@click.option("--storage", default=None,
              help="An Optuna storage URL shared by several `podium tune` processes, e.g. "
                   "postgresql+psycopg://user:pass@host/db (default: sqlite in STUDY/study.db).")
@click.option("--study-name", default=None, help="The study's name in the storage (default podium-tune).")
@click.option("--timeout", type=float, default=None, help="Start no new trial after this many seconds.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Trials run at once, each in its own process.")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="MedianPruner on the per-epoch validation loss.")
@click.option("--prune-startup", type=int, default=2, show_default=True, help="Complete trials before pruning starts.")
@click.option("--prune-warmup", type=int, default=1, show_default=True, help="Epochs of a trial before it can be pruned.")
@click.option("--heartbeat", type=int, default=10, show_default=True,
              help="Seconds between a trial's heartbeats; a trial silent for twice this is failed and retried.")
def tune_command(competition_dir: Path, preset, config_file, out: Path, trials: int, sampler: str,
                 sampler_seed: int | None, space_file: Path | None, storage: str | None, study_name: str | None,
                 timeout: float | None, jobs: int, prune: bool, prune_startup: int, prune_warmup: int,
                 heartbeat: int, quiet: bool, **overrides) -> int:
    """Search the baseline's hyperparameters with Optuna, on the validation split only."""
    from baseline.tune import DEFAULT_STUDY_NAME, TuneJob, load_space, tune
    from harness.competition import load_competition

    if trials < 1 or heartbeat < 1:
        raise click.UsageError("--trials and --heartbeat must be at least 1.")
    config = config_from_options(preset, config_file, progress=False, **overrides)
    if config.val_fraction <= 0:
        raise click.UsageError("podium tune scores every trial on the validation split: --val-fraction must be above 0.")
    load_competition(competition_dir)  # a wrong directory is a user error before any trial starts
    _, space_text = load_space(space_file)
    out.mkdir(parents=True, exist_ok=True)
    job = TuneJob(
        competition_dir=str(competition_dir), base=config.to_dict(), space_text=space_text,
        storage_url=storage or f"sqlite:///{(out / 'study.db').resolve()}", study_name=study_name or DEFAULT_STUDY_NAME,
        trials=trials, sampler=sampler, sampler_seed=sampler_seed, prune=prune, prune_startup=prune_startup,
        prune_warmup=prune_warmup, heartbeat=heartbeat, timeout=timeout,
    )
    summary = tune(job, out, jobs=jobs, progress=not quiet)
    counts = summary["trials"]
    click.echo(f"study {job.study_name}: {counts['complete']} complete, {counts['pruned']} pruned, "
               f"{counts['fail']} failed, {counts['running']} running")
    if "best" in summary:
        best = summary["best"]
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        click.echo(f"best: trial {best['trial']}, validation loss {best['val_loss']:.4f}, accuracy {best['val_acc']:.4f} ({params})")
        click.echo(f"wrote {out / 'best.toml'}: podium baseline --competition {competition_dir} --config {out / 'best.toml'}")
    for note in summary["notes"]:
        click.echo(note)
    return 0


@click.command("explain")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--competition", "competition_dir", required=True, type=click.Path(path_type=Path),
              help="The competition directory (holds competition.toml).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The folder for gradcam_grid.png, index.html, explain.json and overlays/.")
@click.option("--images", type=int, default=16, show_default=True, help="How many wrong validation images to explain.")
@click.option("--val-fraction", type=float, default=None,
              help="The run's validation fraction (default: report.json beside the checkpoint, else 0.1).")
@click.option("--seed", type=int, default=None, help="The run's seed (default: report.json beside the checkpoint, else 42).")
@click.option("--layer", default=None, help="The Grad-CAM target layer by module name (default: chosen, see README).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
def explain_command(checkpoint: Path, competition_dir: Path, out: Path, images: int, val_fraction, seed, layer,
                    threads) -> int:
    """Grad-CAM heat maps of a checkpoint's most confidently wrong validation images."""
    from baseline.explain import explain_checkpoint

    result = explain_checkpoint(checkpoint, competition_dir, out, images, val_fraction=val_fraction, seed=seed,
                                layer=layer, threads=threads)
    click.echo(f"validation: {result.val_images} images, accuracy {result.val_accuracy:.4f}, {result.wrong} wrong; "
               f"Grad-CAM on layer {result.layer}")
    for note in result.notes:
        click.echo(note)
    click.echo(f"wrote {out / 'index.html'} and {out / 'gradcam_grid.png'}")
    return 0
