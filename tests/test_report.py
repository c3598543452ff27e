"""graphprof.report: one self-contained HTML file from the artifacts of a small generated shop.

The full work directory is built once per module: build, train lr + sage (few epochs, 2 seeds), communities
with both methods, and a small LightGCN export (``fit_lightgcn`` wrapped to train few epochs, as in
test_embeddings). Class labels carry HTML (``<b>x</b>``) and mathtext (``$5^_$``), so the tests see that
the page escapes them and that the plots do not choke on them.
"""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from graphprof import workdir
from graphprof.communities.stage import detect_communities
from graphprof.embeddings.export import export_embeddings
from graphprof.errors import ArtifactError, ConfigError
from graphprof.graph.build import build
from graphprof.ingest.generate import generate, write_tables
from graphprof.models.lightgcn import LightGCNConfig
from graphprof.prediction.predict import picked_model
from graphprof.reporting.report import write_report
from graphprof.training.train import train

HTML_CLASS = "<b>x</b>"   # replaces gender 'f': must appear escaped, never as markup
MATH_CLASS = "$5^_$"      # replaces spend_level 'high': invalid mathtext if it reached matplotlib unescaped
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = LightGCNConfig(dim=8, layers=2, epochs=4, eval_every=2, batch_size=512)
FULL_SECTIONS = ["Input data", "Graph", "Attribute prediction", "Confusion matrices", "Calibration", "Why this profile",
                 "Training curves",
                 "Communities", "User map"]
TARGETS = ["gender", "spend_level"]
METHODS = ["leiden", "louvain"]


class Page(HTMLParser):
    """Headings, images, links and visible text of a page, as a browser would see them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.h2: list[str] = []
        self.h3: list[str] = []
        self.imgs: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.text: list[str] = []
        self._heading: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster", "srcset"):
                self.urls.append((tag, name, value or ""))
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag in ("h2", "h3"):
            self._heading = tag
            getattr(self, tag).append("")

    def handle_endtag(self, tag):
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading:
            getattr(self, self._heading)[-1] += data

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def build_shop(root: Path, edit_users=None) -> Path:
    """A generated shop of 300 users built into ``root/work`` (as tests/fixtures_small.py does; imported
    from the modules themselves so the package's re-exports cannot shadow them)."""
    tables = generate(n_users=300, seed=0)
    if edit_users is not None:
        tables["users"] = edit_users(tables["users"].copy())
    write_tables(tables, root / "data")
    build(root / "work", data=root / "data")
    return root / "work"


def _edit_users(users):
    users["gender"] = users["gender"].replace({"f": HTML_CLASS})
    users["spend_level"] = users["spend_level"].replace({"high": MATH_CLASS})
    return users


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    import graphprof.models.lightgcn as lightgcn

    real = lightgcn.fit_lightgcn
    work = build_shop(tmp_path_factory.mktemp("full"), edit_users=_edit_users)
    train(work, targets=TARGETS, models=["lr", "sage"], seeds=2, epochs=5)
    for method in METHODS:
        detect_communities(work, method=method)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lightgcn, "fit_lightgcn", lambda graph, config=None, seed=0: real(graph, SMALL, seed=seed))
        export_embeddings(work)
    manifest = (work / workdir.MANIFEST).read_bytes()
    result = write_report(work)
    return work, result, manifest


@pytest.fixture(scope="module")
def full_page(full) -> tuple[str, Page]:
    text = full[1].path.read_text(encoding="utf-8")
    return text, Page(text)


# ------------------------------------------------------------------------------------------- full report
def test_every_section_is_there_in_order(full, full_page):
    work, result, _ = full
    _, page = full_page
    assert result.path == work / workdir.REPORT
    assert result.sections == FULL_SECTIONS
    assert page.h2 == FULL_SECTIONS
    assert result.missing == []
    assert "Not in this report yet" not in page.all_text
    # one sub-heading per target in each model section, one per community method
    assert page.h3 == TARGETS * 5 + METHODS
    assert result.to_json() == {"path": str(result.path), "sections": FULL_SECTIONS, "missing": [],
                                "images": result.images}
    assert result.summary_lines()[0].startswith(f"report: {result.path} (9 sections: Input data, Graph")


def test_images_are_embedded_pngs(full, full_page):
    _, page = full_page
    # a confusion matrix, a reliability diagram and a training-curve figure per target, a size chart per
    # method, the user map
    expected = 3 * len(TARGETS) + len(METHODS) + 1
    assert len(page.imgs) == expected == full[1].images
    for src in page.imgs:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):], validate=True).startswith(PNG_MAGIC)


def test_nothing_is_fetched_from_outside(full_page):
    _, page = full_page
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for tag, attr, value in page.urls:
        if tag == "img":
            assert value.startswith("data:image/png;base64,"), (tag, attr, value[:40])
        else:
            assert value.startswith("#"), (tag, attr, value)  # only links to the page's own sections
    text, _ = full_page
    assert "http://" not in text and "https://" not in text and "@import" not in text


def test_user_strings_are_escaped(full_page):
    text, page = full_page
    assert "b" not in page.tags                        # the class name never became markup
    assert HTML_CLASS not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert f"classes: {HTML_CLASS}, m" in page.all_text    # ... and reads as written
    assert f"classes: {MATH_CLASS}, low, mid" in page.all_text  # sorted classes, shown literally


def test_metrics_table_matches_metrics_json(full, full_page):
    work, _, _ = full
    _, page = full_page
    m = json.loads((workdir.model_dir(work, "gender", "sage") / "metrics.json").read_text())
    f1 = m["test"]["macro_f1"]
    assert f"{f1['mean']:.3f} ± {f1['std']:.3f}" in page.all_text
    assert page.all_text.count("Majority-class rate") == len(TARGETS)
    assert page.all_text.count("picked") >= len(TARGETS)
    assert "sage vs lr: macro-F1" in page.all_text
    for header in ("balanced accuracy", "ECE", "Brier"):
        assert header in page.all_text
    ece = m["test"]["ece"]
    assert f"{ece['mean']:.3f} ± {ece['std']:.3f}" in page.all_text


def test_calibration_section_names_the_picked_model_and_its_temperature(full, full_page):
    work, _, _ = full
    _, page = full_page
    text = page.all_text
    assert "temperature-scaled on the validation users" in text
    for target in TARGETS:
        picked = picked_model(work, target)
        seed_dir = workdir.run_dir(work, target, picked, 0)
        meta = json.loads((seed_dir / workdir.MODEL_META).read_text())
        assert meta["calibration"]["method"] == "temperature"
        assert meta["calibration"]["temperature"] > 0


def test_community_profiles_and_map_are_described(full_page):
    _, page = full_page
    text = page.all_text
    assert "modularity" in text and "most distinctive" in text
    assert "lightgcn user embeddings (8 dimensions)" in text
    assert "Coloured by leiden community" in text


def test_report_reads_only_and_is_deterministic(full, tmp_path):
    work, result, manifest = full
    again = write_report(work, out=tmp_path / "copy.html")
    assert again.path == tmp_path / "copy.html"
    assert again.path.read_bytes() == result.path.read_bytes()
    assert (work / workdir.MANIFEST).read_bytes() == manifest   # no stage recorded, nothing retrained
    assert not list(tmp_path.glob(".copy.html.*"))             # the atomic write left no temp file


def test_every_combination_of_models_reports(tmp_path):
    """sign records a history without a validation loss; sage records one with it; the report draws both."""
    work = build_shop(tmp_path)
    train(work, targets=["gender"], models=["lr", "sage", "sign"], seeds=1, epochs=3)
    result = write_report(work)
    page = Page(result.path.read_text(encoding="utf-8"))
    assert "Training curves" in result.sections and "Calibration" in result.sections
    assert page.h3.count("gender") == 5  # metrics, confusion, calibration, why this profile, curves
    assert "sign" in page.all_text and "sage" in page.all_text


# -------------------------------------------------------------------------------------- partial / errors
def test_a_graph_only_work_dir_says_what_to_run(tmp_path):
    work = build_shop(tmp_path)
    result = write_report(work)
    page = Page(result.path.read_text(encoding="utf-8"))
    assert result.sections == page.h2 == ["Input data", "Graph", "User map"]
    assert len(page.imgs) == result.images == 1
    text = page.all_text
    assert "Not in this report yet" in text
    assert "Attribute prediction, confusion matrices, training curves: run graphprof train" in text
    assert "Communities: run graphprof communities" in text
    assert "User map of the learned embeddings: run graphprof export-embeddings" in text
    assert "standardised user features" in text
    assert [m.split(":")[0] for m in result.missing] == [
        "Attribute prediction, confusion matrices, training curves", "Communities",
        "User map of the learned embeddings"]
    assert "run 'graphprof train'" in result.missing[0]


def test_communities_of_an_earlier_graph_are_left_out(tmp_path):
    work = build_shop(tmp_path)
    detect_communities(work)
    summary_path = workdir.communities_dir(work, "leiden") / workdir.COMMUNITY_SUMMARY
    summary = json.loads(summary_path.read_text())
    summary["graph_id"] = "0" * 64
    summary_path.write_text(json.dumps(summary))
    result = write_report(work)
    assert "Communities" not in result.sections
    assert any("graphprof communities --method leiden" in m and "earlier graph" in m for m in result.missing)


def test_no_graph_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="no graph found; run 'graphprof build-graph' first"):
        write_report(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_out_must_be_html(full):
    with pytest.raises(ConfigError, match=r"--out must end in \.html\. Got 'report\.txt' instead"):
        write_report(full[0], out="report.txt")
    assert not Path("report.txt").exists()
