"""Click commands of the harness: init, score, evaluate. Each parses arguments and calls one function."""
from __future__ import annotations

import json
from pathlib import Path

import click

from harness.competition import load_competition

competition_option = click.option(
    "--competition",
    "competition_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The competition directory (the one holding competition.toml).",
)


@click.command("init")
@click.argument("dataset")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Folder to create the competition in.")
@click.option("--name", default=None, help="Competition name (default: the dataset's).")
@click.option("--public-fraction", default=0.3, show_default=True, type=float, help="Share of test rows on the public board.")
@click.option("--decoys", default=0, show_default=True, type=click.IntRange(min=0), help="Unscored decoy test images to add.")
@click.option("--seed", default=0, show_default=True, type=int, help="Secret seed for the split, shuffle and ids.")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path), help="Where datasets are downloaded (default $PODIUM_DATA or ~/.cache/podium/data).")
@click.option("--slug", default=None, help="kaggle: the Kaggle competition whose files to download (the kaggle client's -c).")
def init_command(dataset, root, name, public_fraction, decoys, seed, data_dir, slug):
    """Build a competition directory from DATASET (cifar10, digits, or kaggle --slug SLUG)."""
    if dataset == "kaggle":  # the files of a Kaggle competition, through the official client
        from kagglebridge.fetch import init_from_kaggle

        if decoys:
            raise click.UsageError("--decoys is for cifar10 and digits, not kaggle.")
        comp, lines = init_from_kaggle(slug or "", root, name, public_fraction, seed=seed)
        for line in lines:
            click.echo(line)
        return
    from harness.build import build_competition

    comp = build_competition(dataset, root, name, public_fraction, decoys, seed, data_dir)
    click.echo(f"competition {comp.name!r} written to {comp.root}")
    click.echo(f"  teams get:      {comp.root / 'public'}  (train.npz, test.npz, sample_submission.csv)")
    click.echo(f"  keep private:   {comp.root / 'private'}  (solution.csv)")
    click.echo(f"  settings:       {comp.root / 'competition.toml'}")


@click.command("score")
@click.argument("file", type=click.Path(path_type=Path))
@competition_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--device", default=None, help="For checkpoints: cpu, cuda, cuda:1 ... (default: auto).")
@click.option("--save-predictions", type=click.Path(path_type=Path), default=None, help="For checkpoints: also write the predictions as a CSV submission.")
def score_command(file, competition_dir, as_json, device, save_predictions):
    """Score FILE, a prediction CSV or a .safetensors checkpoint (decided by content)."""
    from harness.scoring import score_file

    comp = load_competition(competition_dir)
    report = score_file(file, comp, device=device, save_predictions=save_predictions)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from harness.report import format_report

        click.echo(format_report(report))


@click.command("evaluate")
@click.argument("directory", type=click.Path(path_type=Path))
@competition_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the ranked board as CSV here.")
@click.option("--device", default=None, help="For checkpoints: cpu, cuda ... (default: auto).")
def evaluate_command(directory, competition_dir, out, device):
    """Score every file under DIRECTORY/<team>/ and rank the teams by their best public score."""
    from harness.evaluate import evaluate_folder, write_leaderboard_csv
    from harness.report import format_table

    comp = load_competition(competition_dir)
    result = evaluate_folder(directory, comp, device=device)
    metric = result.primary_metric
    rows = [["rank", "team", f"public {metric}", "95% CI", "entries", "best file"]]
    for s in result.standings:
        pub = s.best.report.public
        rows.append([str(s.rank), s.team, f"{pub.metric(metric):.4f}", f"[{pub.ci_low:.4f}, {pub.ci_high:.4f}]", str(s.entries), s.best.path.name])
    click.echo(format_table(rows, align_right={0, 2, 4}) if result.standings else "no submission could be scored.")
    if result.refused:
        click.echo(f"\n{len(result.refused)} file(s) refused:")
        for r in result.refused:
            click.echo(f"  {r.team}/{r.path.name}:")
            for m in r.messages:
                click.echo(f"    - {m}")
    if out is not None:
        write_leaderboard_csv(result, out)
        click.echo(f"\nleaderboard written to {out}")


def _triple_option(value: str | None, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise click.BadParameter(f"{name} must be three comma-separated numbers, e.g. 0.485,0.456,0.406")
    return parts  # type: ignore[return-value]


@click.command("pack")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--library", required=True, type=click.Choice(["torchvision", "timm"]), help="The registry the architecture comes from.")
@click.option("--arch", required=True, help="The registry name, e.g. resnet50 (torchvision) or convnext_tiny (timm).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The .safetensors file to write.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Class count (default: read from the final layer's shape).")
@click.option("--input-size", type=click.IntRange(min=1), default=None, help="Square input side the model expects (default: the competition's).")
@click.option("--mean", default=None, help="Normalisation mean as r,g,b (default: the competition's).")
@click.option("--std", default=None, help="Normalisation std as r,g,b (default: the competition's).")
@click.option("--max-mb", type=click.IntRange(min=1), default=4096, show_default=True, help="Refuse inputs larger than this.")
def pack_command(model, library, arch, output, num_classes, input_size, mean, std, max_mb):
    """Convert MODEL, a .pt/.pth state dict, into a .safetensors checkpoint with its model card.

    MODEL is read only with torch.load(weights_only=True); anything that needs more (a pickled
    module, TorchScript, torch.package) is refused.
    """
    from harness.checkpoint.pack import pack_checkpoint

    card = pack_checkpoint(
        model, output, library=library, arch=arch, num_classes=num_classes, input_size=input_size,
        mean=_triple_option(mean, "--mean"), std=_triple_option(std, "--std"), max_bytes=max_mb * 2**20,
    )
    click.echo(f"wrote {output}: {card.library}/{card.arch}, {card.num_classes} classes")
