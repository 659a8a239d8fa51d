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
@click.option("--name", default=None, help="Competition name (default: the dataset's; required for images).")
@click.option("--title", default=None, help="The competition's title (images; default: NAME image classification).")
@click.option("--public-fraction", default=0.3, show_default=True, type=float, help="Share of test rows on the public board.")
@click.option("--decoys", default=0, show_default=True, type=click.IntRange(min=0), help="Unscored decoy test images to add (cifar10, digits).")
@click.option("--seed", default=0, show_default=True, type=int, help="Secret seed for the split, shuffle and ids.")
@click.option("--hidden-test", is_flag=True, help="Keep the test images out of public/: checkpoints only, CSVs refused.")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path), help="Where datasets are downloaded (default $PODIUM_DATA or ~/.cache/podium/data).")
@click.option("--train", "train_dir", default=None, type=click.Path(path_type=Path), help="images: training folder DIR/<class>/<file>.")
@click.option("--test", "test_dir", default=None, type=click.Path(path_type=Path), help="images: folder of test images.")
@click.option("--labels", "labels_file", default=None, type=click.Path(path_type=Path), help="images: CSV file,label with each test image's class.")
@click.option("--image-size", default=None, type=int, help="images: side N of the stored images (default: median shorter side, at most 224).")
@click.option("--image-format", default="jpeg", show_default=True, type=click.Choice(["jpeg", "png"]), help="images: how the prepared images are stored.")
@click.option("--skip-bad", is_flag=True, help="images: leave out unreadable images (listed) instead of stopping.")
@click.option("--allow-duplicates", is_flag=True, help="images: keep going when a test image is byte-identical to a training image.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="images: processes preparing images (default: one per CPU).")
def init_command(dataset, root, name, title, public_fraction, decoys, seed, hidden_test, data_dir, train_dir, test_dir,
                 labels_file, image_size, image_format, skip_bad, allow_duplicates, workers):
    """Build a competition directory from DATASET: cifar10, digits, or images (your own folders)."""
    from harness.errors import DatasetError

    if dataset == "images":
        missing = [opt for opt, value in (("--train", train_dir), ("--test", test_dir), ("--labels", labels_file), ("--name", name)) if value is None]
        if missing:
            raise DatasetError(f"podium init images needs {', '.join(missing)}: see `podium init --help`.")
        if decoys:
            raise DatasetError("--decoys is for cifar10 and digits; an images competition takes none.")
        from harness.images import build_images_competition

        comp, report = build_images_competition(
            train_dir, test_dir, labels_file, root, name, title=title, image_size=image_size,
            public_fraction=public_fraction, seed=seed, hidden_test=hidden_test, skip_bad=skip_bad,
            allow_duplicates=allow_duplicates, image_format=image_format, workers=workers,
        )
        for line in report.swept:
            click.echo(f"removed a build folder left by a killed build: {line}", err=True)
        for line in report.ignored:
            click.echo(f"warning: {line}", err=True)
        for line in report.skipped:
            click.echo(f"skipped (unreadable): {line}", err=True)
        for line in report.duplicates:
            click.echo(f"kept (--allow-duplicates): {line}", err=True)
        click.echo(f"{report.train_images} training and {report.test_images} test images, {report.image_size}x{report.image_size} px")
    else:
        used = [opt for opt, value in (("--train", train_dir), ("--test", test_dir), ("--labels", labels_file),
                                        ("--image-size", image_size), ("--title", title), ("--workers", workers))
                if value is not None] + [opt for opt, flag in (("--skip-bad", skip_bad), ("--allow-duplicates", allow_duplicates)) if flag]
        if used:
            raise DatasetError(f"{', '.join(used)} only apply to `podium init images`, not to {dataset}.")
        from harness.build import build_competition

        comp = build_competition(dataset, root, name, public_fraction, decoys, seed, data_dir, hidden_test=hidden_test)
    click.echo(f"competition {comp.name!r} written to {comp.root}")
    public = "train/, train.csv" if comp.folders else "train.npz"
    if not comp.hidden_test:
        public += ", test/, test.csv, sample_submission.csv" if comp.folders else ", test.npz, sample_submission.csv"
    private = "solution.csv" + (", the hidden test images" if comp.hidden_test else "")
    click.echo(f"  teams get:      {comp.root / 'public'}  ({public})")
    click.echo(f"  keep private:   {comp.root / 'private'}  ({private})")
    click.echo(f"  settings:       {comp.root / 'competition.toml'}")
    click.echo(f"  overview page:  {comp.description_path}  (edit it: Markdown)")


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
