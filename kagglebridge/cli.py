"""``podium kaggle ...``: export, submit, board. Each parses its arguments and calls one function."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("kaggle")
def kaggle_group() -> None:
    """Talk to Kaggle through the official client (credentials: KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN)."""


@kaggle_group.command("export")
@click.option("--competition", "competition_dir", required=True, type=click.Path(path_type=Path),
              help="The competition directory (the organizer's copy, with private/).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The bundle folder to create.")
@click.option("--publish-hidden-test", is_flag=True,
              help="A hidden-test competition: export its test images anyway (they become public on Kaggle).")
def export_command(competition_dir: Path, out: Path, publish_hidden_test: bool) -> None:
    """Write what a Kaggle Community competition needs: solution.csv, sample_submission.csv, data/, description.md."""
    from kagglebridge.export import export_competition

    bundle = export_competition(competition_dir, out, publish_hidden_test=publish_hidden_test)
    click.echo(f"Kaggle bundle written to {bundle}")
    click.echo(f"  solution:           {bundle / 'solution.csv'}  (id,label,Usage; upload as the solution file)")
    click.echo(f"  sample submission:  {bundle / 'sample_submission.csv'}")
    click.echo(f"  data files:         {bundle / 'data'}")
    click.echo(f"  description:        {bundle / 'description.md'}  (its Evaluation section names the metric)")


@kaggle_group.command("submit")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--slug", required=True, help="The Kaggle competition (the -c of the kaggle command).")
@click.option("--message", "-m", default="submitted with podium", show_default=True, help="The submission's description.")
@click.option("--competition", "competition_dir", default=".", show_default=True, type=click.Path(path_type=Path),
              help="The local podium competition FILE is checked against first.")
def submit_command(file: Path, slug: str, message: str, competition_dir: Path) -> None:
    """Check FILE with podium's own rules, then submit it to Kaggle competition SLUG."""
    from kagglebridge.submit import submit

    click.echo(submit(file, slug, message, competition_dir))


@kaggle_group.command("board")
@click.option("--slug", required=True, help="The Kaggle competition.")
@click.option("--into-server", default=None, help="A podium server's URL: store the board there as its Kaggle tab.")
@click.option("--token", default=None, envvar="PODIUM_ADMIN_TOKEN", help="The server's organizer token (or $PODIUM_ADMIN_TOKEN).")
def board_command(slug: str, into_server: str | None, token: str | None) -> None:
    """Print the Kaggle leaderboard of SLUG, or store it on a podium server (--into-server URL --token ADMIN)."""
    from harness.errors import PodiumError
    from kagglebridge.submit import fetch_board, send_board

    if into_server and not token:
        raise PodiumError("--into-server needs --token, the server's organizer token.")
    rows = fetch_board(slug)
    if into_server:
        url = send_board(slug, rows, into_server, token)
        click.echo(f"{len(rows)} rows of the Kaggle board of {slug} stored; shown at {url}")
        return
    from harness.report import format_table

    if not rows:
        click.echo(f"The Kaggle board of {slug} has no team yet.")
        return
    table = [["rank", "team", "score", "submitted (UTC)"]] + [
        [str(r["rank"]), r["team"], r["score"], r["date"]] for r in rows]
    click.echo(format_table(table, align_right={0, 2}))


# harness init's options that `podium init kaggle` has no use for: (option, parameter name)
KAGGLE_IGNORES = (("--title", "title"), ("--decoys", "decoys"), ("--hidden-test", "hidden_test"),
                  ("--data-dir", "data_dir"), ("--train", "train_dir"), ("--test", "test_dir"),
                  ("--labels", "labels_file"), ("--image-size", "image_size"), ("--skip-bad", "skip_bad"),
                  ("--allow-duplicates", "allow_duplicates"), ("--workers", "workers"))


def _init(dataset, slug, **options):
    from harness.cli import init_command as harness_init

    if dataset != "kaggle":
        if slug is not None:
            raise click.UsageError("--slug goes with `podium init kaggle`.")
        return harness_init.callback(dataset=dataset, **options)
    from kagglebridge.fetch import init_from_kaggle  # the files of a Kaggle competition, through the official client

    ignored = [opt for opt, value in KAGGLE_IGNORES if options.get(value) not in (None, False, 0)]
    if click.get_current_context().get_parameter_source("image_format") is not click.core.ParameterSource.DEFAULT:
        ignored.append("--image-format")
    if ignored:
        raise click.UsageError(
            f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to `podium init kaggle`, which "
            "takes only --slug, --root, --name, --public-fraction and --seed: the competition is built from the "
            "Kaggle competition's own files, as they are.")
    comp, lines = init_from_kaggle(slug or "", options["root"], options["name"], options["public_fraction"],
                                   seed=options["seed"])
    for line in lines:
        click.echo(line)


def _make_init_command() -> click.Command:
    """`podium init`: harness's command (cifar10, digits, images) plus `kaggle --slug SLUG`, which
    downloads through the kaggle client; it lives here so that harness never imports this package."""
    from harness.cli import init_command as harness_init

    return click.Command(
        "init", callback=_init,
        params=[*harness_init.params,
                click.Option(["--slug"], default=None,
                             help="kaggle: the Kaggle competition whose files to download (the kaggle client's -c).")],
        help="Build a competition directory from DATASET: cifar10, digits, images (your own folders) "
             "or kaggle --slug SLUG.",
    )


init_command = _make_init_command()
