"""The submission page: readable training-curve ticks (x and y), a page for a history with
extreme losses, and the per-class table and heat map of every split after reveal (and of none
but the public one before)."""
from __future__ import annotations

import html
import io
import re

import numpy as np
import pytest
import sqlalchemy as sa

from tests.conftest import noisy_predictions
from harness.competition import PRIVATE, PUBLIC
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import Submission
from leaderboard.charts import epoch_ticks, line_chart

from tests.site import ADMIN, csv_of, history_csv, make_app



def tick_labels(page: str) -> list[tuple[int, float, list[tuple[float, str, str]]]]:
    """(width, font size, x tick labels (x, text, anchor)) of every chart on a page, in SVG units."""
    charts = []
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        width = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))
        font = re.search(r'<svg[^>]*font-size="(\d+)"', svg)
        font = float(font.group(1)) if font else 12.0  # the stylesheet's size for .tick otherwise
        bottom_row = re.findall(r'<text class="tick" x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)">([^<]*)</text>', svg)
        ys = [float(y) for _, y, _, _ in bottom_row]
        low = max(ys)  # the x axis labels sit below every y axis label
        charts.append((width, font, [(float(x), html.unescape(text), anchor) for x, y, anchor, text in bottom_row if float(y) == low]))
    return charts


def extents(ticks, font: float) -> list[tuple[float, float]]:
    """Where each label starts and ends; a system-ui glyph is at most about 0.62 em wide."""
    out = []
    for x, text, anchor in ticks:
        w = len(text) * 0.62 * font
        start = x if anchor == "start" else (x - w if anchor == "end" else x - w / 2)
        out.append((start, start + w))
    return out


# --- the training curves' x axis ---------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 3, 8, 9, 10, 12, 25, 40, 100, 1000])
def test_epoch_ticks_are_few_whole_and_round(epochs):
    ticks = epoch_ticks([float(e) for e in range(1, epochs + 1)])
    assert 1 <= len(ticks) <= 8
    assert all(isinstance(t, int) and 1 <= t <= epochs for t in ticks)
    steps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert len(steps) <= 1 and all(re.fullmatch(r"[125]0*", str(s)) for s in steps)
    if epochs <= 8:
        assert ticks == list(range(1, epochs + 1))


def test_fractional_epochs_get_whole_ticks_only():
    assert epoch_ticks([0.5, 1.0, 1.5, 2.0, 2.5]) == [1, 2]
    assert epoch_ticks([0.25, 0.5]) == []  # nothing whole to label; the points' tooltips still say


@pytest.mark.parametrize("epochs", [3, 10, 12, 40, 250, 1700])
def test_submission_page_curve_labels_do_not_overlap(tmp_path, digits_competition, digits_solution, epochs):
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Curves")
    client = app.test_client()
    client.post("/login", data={"name": "Curves", "token": token})
    pred = noisy_predictions(digits_solution, 0.8)
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, pred)), "sub.csv"),
        "history": (io.BytesIO(history_csv(epochs)), "history.csv"),
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.location).get_data(as_text=True)
    charts = tick_labels(page)
    assert len(charts) == 2
    for width, font, ticks in charts:
        assert 1 <= len(ticks) <= 8
        assert all(re.fullmatch(r"\d+", text) for _, text, _ in ticks)  # whole epochs, no "epoch " prefix
        spans = extents(ticks, font)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start - end >= font / 2, f"{epochs} epochs: tick labels {ticks} overlap or touch"
        assert spans[0][0] >= 0 and spans[-1][1] <= width
    assert "x axis: epoch" in page and f"epoch {epochs}" in page  # the axis is named; tooltips too


@pytest.mark.parametrize("values", [(0.05, 2.25), (0.9012, 0.9031), (0.3, 0.98), (0.5, 0.5), (120.0, 80000.0), (0.0, 1e-4),
                                    (0.5, 0.5 + 1.3e-12), (1e-300, 3e-300), (0.0, 0.0)])
def test_y_ticks_are_round_never_below_zero_for_positive_data_and_fit_left_of_the_axis(values):
    chart = line_chart([("s", [(1.0, values[0]), (2.0, values[1])])])
    texts = [text for _, text in chart.yticks]
    numbers = [float(t) for t in texts]
    assert 2 <= len(texts) <= 5 and len(set(texts)) == len(texts)  # distinct labels, none repeated by rounding
    assert numbers[0] <= min(values) and numbers[-1] >= max(values) and numbers[0] >= 0
    steps = {round(b - a, 12) for a, b in zip(numbers, numbers[1:])}
    assert len(steps) == 1 and re.fullmatch(r"(1|2|2\.5|5)(e[-+]?\d+)?", f"{steps.pop() / 10 ** np.floor(np.log10(numbers[1] - numbers[0])):g}")
    font = chart.tick_font
    for text in texts:  # each label ends 4 units left of the axis and must start inside the picture
        assert chart.left - 4 - len(text) * 0.62 * font >= 0, text


@pytest.mark.usefixtures("each_database")  # on SQLite and on PostgreSQL
def test_a_history_with_extreme_losses_still_shows_its_page(tmp_path, digits_competition, digits_solution):
    """read_history accepts any finite loss; 1e308 beside -1e308 overflowed the y axis (OverflowError: a 500 on the
    team's and the organizer's submission page)."""
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Extremes")
    client = app.test_client()
    client.post("/login", data={"name": "Extremes", "token": token})
    history = b"epoch,train_loss,train_acc,val_loss,val_acc\n1,1e308,0.5,0.8,0.5\n2,-1e308,0.6,0.7,0.6\n3,0.4,0.7,0.6,0.65\n"
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, noisy_predictions(digits_solution, 0.8))), "s.csv"),
        "history": (io.BytesIO(history), "history.csv"),
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.location)
    assert page.status_code == 200 and page.get_data(as_text=True).count("<svg") == 2


# --- the per-class table and heat map of each split --------------------------------------------

def rendered_cm(page: str) -> list[list[int]]:
    table = re.search(r'<table class="cm">.*?<tbody>(.*?)</tbody>', page, flags=re.S).group(1)
    return [[int(v) for v in re.findall(r"<td[^>]*>(\d+)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]


def rendered_support(page: str) -> list[int]:
    table = re.search(r'<table class="per-class">.*?<tbody>(.*?)</tbody>', page, flags=re.S).group(1)
    return [int(row[-1]) for row in (re.findall(r'<td class="num">([^<]*)</td>', r) for r in re.findall(r"<tr>(.*?)</tr>", table))]


@pytest.mark.usefixtures("each_database")  # on SQLite and on PostgreSQL
def test_every_split_has_its_table_and_heat_map_after_reveal_and_only_public_before(tmp_path, digits_competition, digits_solution):
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Splitters")
    client = app.test_client()
    client.post("/login", data={"name": "Splitters", "token": token})
    pred = noisy_predictions(digits_solution, 0.7, seed=3)
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, pred)), "sub.csv")})
    sub_url = response.location
    with app.app_context():
        result = db.session.scalar(sa.select(Submission)).result_json
    cms = {split: result[split]["confusion_matrix"] for split in ("public", "private", "all")}
    supports = {split: [c["support"] for c in result[split]["per_class"]] for split in cms}
    assert len({str(cm) for cm in cms.values()}) == 3 and len({str(s) for s in supports.values()}) == 3
    private_n = str(int((digits_solution.usage == PRIVATE).sum()))
    assert private_n != str(int((digits_solution.usage == PUBLIC).sum()))

    # Before reveal: the public split only, whatever the address asks for; no switcher.
    for query in ("", "?split=private", "?split=all", "?split=nonsense"):
        page = client.get(sub_url + query).get_data(as_text=True)
        assert rendered_cm(page) == cms["public"] and rendered_support(page) == supports["public"], query
        assert "Per class (public)" in page and "Confusion matrix (public)" in page
        assert 'class="splits"' not in page and "split=private" not in page and "(private)" not in page
        assert f'<td class="num">{private_n}</td>' not in page  # the private row count is not shown either

    client_admin = app.test_client()
    client_admin.post("/admin/login", data={"token": ADMIN})
    assert client_admin.post("/admin/reveal", data={"reveal": "1"}).status_code == 302

    page = client.get(sub_url).get_data(as_text=True)  # still public by default, with the switcher
    assert rendered_cm(page) == cms["public"]
    links = re.findall(r'href="([^"]*split=(\w+)#breakdown)"', page)
    assert sorted(name for _, name in links) == ["all", "private"]
    assert '<strong aria-current="page">public</strong>' in page
    for href, name in links:
        shown = client.get(html.unescape(href)).get_data(as_text=True)
        assert rendered_cm(shown) == cms[name] and rendered_support(shown) == supports[name], name
        label = {"private": "private", "all": "all rows"}[name]
        assert f"Per class ({label})" in shown and f"Confusion matrix ({label})" in shown
        assert f'<strong aria-current="page">{label}</strong>' in shown
        # the organizer sees the same page
        assert rendered_cm(client_admin.get(html.unescape(href)).get_data(as_text=True)) == cms[name]

    # Another team never opens it, split or not.
    with app.app_context():
        _, rival_token = create_team("Rivals")
    rival = app.test_client()
    rival.post("/login", data={"name": "Rivals", "token": rival_token})
    assert rival.get(sub_url + "?split=private").status_code == 404
