"""``podium baseline`` and ``podium diagnose`` (also ``python -m baseline`` for torchrun)."""
from __future__ import annotations

from pathlib import Path

import click

from baseline.config import DATA_PATHS, PRESETS


@click.command("baseline")
@click.option("--competition", "competition_dir", required=True, type=click.Path(path_type=Path),
              help="The competition directory (holds competition.toml).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="cifar10", show_default=True,
              help="cifar10: the course notes' exact recipe; demo: a small CPU model for the digits competition.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The run directory to write (default runs/<preset>).")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None, help="The global batch (split across torchrun processes).")
@click.option("--lr", type=float, default=None)
@click.option("--momentum", type=float, default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="constant (the course notes') or cosine, set per epoch.")
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
def baseline_command(competition_dir: Path, preset: str, out: Path | None, quiet: bool, compile_, **overrides) -> int:
    """Train the reference baseline and write a run directory."""
    from baseline.config import resolve_config
    from baseline.train import run_baseline

    config = resolve_config(preset, compile=compile_, progress=False if quiet else None, **overrides)
    out = out if out is not None else Path("runs") / preset
    result = run_baseline(config, competition_dir, out)
    if result.out_dir is not None and not quiet:
        last = result.history[-1]
        val = f", validation accuracy {last['val_acc']:.4f}" if last["val_acc"] is not None else ""
        click.echo(f"wrote {result.out_dir} in {result.seconds:.1f} s{val}")
    return 0


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
