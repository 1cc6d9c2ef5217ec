"""`uft export`: a folder that torch and open_clip alone use, whose README snippet gives `uft predict`'s scores and
decisions; adapted-only weights with their loader; the torch.export program; refusals before anything is written."""

from __future__ import annotations

import ast
import csv
import errno
import re
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from uft.cli import cli_main, main
from uft.errors import InputError
from uft.export import SCORE_EXPRESSIONS, ood_score_of, score_rule, write_export
from uft.export_command import export_main
from uft.scores import MSP, Energy, MaxLogit, OODScore

from .args import TINY, demo_args

SNIPPET_IMPORTS = {"sys", "open_clip", "torch", "PIL"}
# Runs the snippet as a script with uft made unimportable: it must need torch, open_clip and PIL only.
WITHOUT_UFT = "import runpy, sys; sys.modules['uft'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0])"


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory) -> Path:
    """Pretrained weights as a file (random, seeded): what adapted-only exports name and load over."""
    path = tmp_path_factory.mktemp("base") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model(TINY).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def run_args(shapes_dir, base_weights):
    return lambda root, *extra: demo_args(shapes_dir, root, f"--model.pretrained={base_weights}", *extra)


@pytest.fixture(scope="module")
def checkpoint(run_args, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    cli_main(["fit", *run_args(root, "--trainer.max_epochs=1")])
    return root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def predicted(run_args, checkpoint, tmp_path_factory) -> tuple[list[dict], float]:
    """`uft predict`'s rows on the target set and its threshold."""
    root = tmp_path_factory.mktemp("predict")
    cli = cli_main(run_args(root), run=False)  # as `uft predict` builds it (keeps the module to read its threshold)
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint), return_predictions=False)
    (path,) = root.rglob("predictions.csv")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle)), cli.model.predict_threshold


def export(run_args, checkpoint: Path, out: Path, *extra: str) -> Path:
    export_main([f"--ckpt_path={checkpoint}", f"--out={out}", *extra, *run_args(out.parent / "logs")])
    return out


@pytest.fixture(scope="module")
def full(run_args, checkpoint, tmp_path_factory) -> Path:
    return export(run_args, checkpoint, tmp_path_factory.mktemp("full") / "export", "--program")


def readme_snippet(folder: Path) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    return code


def run_snippet(folder: Path, images: list[Path], tmp_path: Path) -> list[tuple[str, str, float]]:
    """The README's snippet as a script in a fresh interpreter, without uft: (file, label, score) per image."""
    script = tmp_path / "classify.py"
    script.write_text(readme_snippet(folder))
    command = [sys.executable, "-c", WITHOUT_UFT, str(script), str(folder), *map(str, images)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [(f, label, float(score)) for f, label, score in (line.split("\t") for line in done.stdout.splitlines())]


@pytest.fixture(scope="module")
def full_answers(full, predicted, shapes_dir, tmp_path_factory) -> list[tuple[str, str, float]]:
    rows, _ = predicted
    return run_snippet(full, [shapes_dir / r["path"] for r in rows], tmp_path_factory.mktemp("snippet"))


def test_the_readme_snippet_gives_predicts_scores_and_decisions(full, full_answers, predicted, shapes_dir):
    """The snippet (torch, open_clip and PIL only, about 15 lines) run on the 42 target images: `uft predict`'s
    scores within 1e-5 and the same decision for every image (a class, or unknown)."""
    code = readme_snippet(full)
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == SNIPPET_IMPORTS
    assert len([line for line in code.splitlines() if line.strip()]) <= 18
    rows, _ = predicted
    assert [Path(f) for f, _, _ in full_answers] == [shapes_dir / r["path"] for r in rows]
    assert [label for _, label, _ in full_answers] == [r["pred"] for r in rows]
    scores = torch.tensor([score for _, _, score in full_answers], dtype=torch.float64)
    expected = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64)  # written with 6 digits
    assert torch.allclose(scores, expected, rtol=0, atol=1e-5)
    assert 0 < sum(r["pred"] == "unknown" for r in rows) < len(rows)  # both decisions are compared
    assert not (full.parent / "logs").exists()  # the export ran no trainer: no run folder


def test_classifier_holds_predicts_threshold_and_the_adapted_class_features(
    full, predicted, checkpoint, run_args, tmp_path
):
    classifier = torch.load(full / "classifier.pt", weights_only=True)  # plain data: torch's safe loading reads it
    _, threshold = predicted
    assert classifier["threshold"] == threshold
    assert classifier["score"] == {"name": "msp", "temperature": 1.0}
    assert classifier["model_name"] == TINY and classifier["weights"] == "full"
    assert classifier["class_names"] == ["circle", "square", "triangle", "cross", "ring"]
    features = classifier["class_features"]
    assert features.shape == (5, 32) and torch.allclose(features.norm(dim=-1), torch.ones(5))
    # The learned context is baked in: the features are not the zero-shot prompts' (the context moved in training).
    cli = cli_main(run_args(tmp_path), run=False)
    with torch.no_grad():
        zero_shot = cli.model.text_features()
    assert not torch.allclose(features, zero_shot, atol=1e-4)
    ctx = torch.load(checkpoint, weights_only=True)["state_dict"]["prompts.ctx"]
    cli.model.prompts.ctx.data.copy_(ctx)
    with torch.no_grad():
        assert torch.allclose(features, cli.model.text_features(), atol=1e-6)


def test_model_pt_loads_through_open_clip_with_the_adapted_norm_affines(full, checkpoint, base_weights):
    open_clip.add_model_config(full)  # as the snippet does (the tiny architecture's JSON is in the folder)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(full / "model.pt"))
    loaded, base = model.state_dict(), torch.load(base_weights, weights_only=True)
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    norms = {name.removeprefix("clip."): value for name, value in trained.items() if name.startswith("clip.")}
    assert norms and all(name.startswith("visual.") for name in norms)
    for name, value in loaded.items():
        assert torch.equal(value, norms.get(name, base[name])), name
    assert any(not torch.equal(norms[name], base[name]) for name in norms)  # adaptation changed them


def test_adapted_only_holds_the_norm_affines_and_its_loader_gives_the_same_answers(
    run_args, checkpoint, full, full_answers, predicted, shapes_dir, base_weights, tmp_path
):
    folder = export(run_args, checkpoint, tmp_path / "small", "--weights", "adapted-only")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapted.pt", "classifier.pt", f"{TINY}.json"]
    adapted = torch.load(folder / "adapted.pt", weights_only=True)
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert adapted.keys() == {k.removeprefix("clip.") for k in trained if k.startswith("clip.")}
    assert (folder / "adapted.pt").stat().st_size * 50 < (full / "model.pt").stat().st_size
    assert torch.load(folder / "classifier.pt", weights_only=True)["base_weights"] == str(base_weights)
    rows, _ = predicted
    answers = run_snippet(folder, [shapes_dir / r["path"] for r in rows], tmp_path)
    assert answers == full_answers  # the same model, so the same arithmetic


def test_the_program_gives_the_same_scores_and_decisions(full, full_answers, predicted, shapes_dir):
    from PIL import Image

    rows, _ = predicted
    classifier = torch.load(full / "classifier.pt", weights_only=True)
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)  # the tiny architecture's transform
    images = torch.stack([preprocess(Image.open(shapes_dir / r["path"]).convert("RGB")) for r in rows])
    program = torch.export.load(full / "program.pt2").module()
    score, pred_id = program(images)
    names = classifier["class_names"]
    assert [names[i] if i >= 0 else "unknown" for i in pred_id.tolist()] == [label for _, label, _ in full_answers]
    expected = torch.tensor([s for _, _, s in full_answers])
    assert torch.allclose(score, expected, rtol=0, atol=1e-5)
    assert program(images[:1])[0].shape == (1,)  # any batch size


@pytest.mark.parametrize("score", [MSP(2.0), MaxLogit(), Energy(0.5)], ids=["msp", "max_logit", "energy"])
def test_each_score_is_written_as_data_and_computed_by_the_snippets_expression(score):
    rule = score_rule(score)
    assert rule == {**rule, "temperature": getattr(score, "temperature", 1.0)}
    cosine = torch.randn(6, 5) / 3
    computed = eval(SCORE_EXPRESSIONS[rule["name"]], {"torch": torch}, {"cosine": cosine, "t": rule["temperature"]})
    assert torch.allclose(computed, score(cosine))
    assert torch.allclose(ood_score_of(rule)(cosine), score(cosine))


def test_a_score_the_snippet_cannot_compute_is_refused():
    class Custom(OODScore):
        def __call__(self, cosine):
            return cosine.mean(-1)

    with pytest.raises(InputError, match="MSP, MaxLogit and Energy"):
        score_rule(Custom())


def refused(monkeypatch, capsys, args: list[str]) -> str:
    """The error line of `uft export ARGS` (exit status 2)."""
    monkeypatch.setattr(sys, "argv", ["uft", "export", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("uft: error: ")
    return line


def test_refusals_are_one_line_and_write_nothing(run_args, checkpoint, shapes_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    line = refused(monkeypatch, capsys, ["--ckpt_path", str(tmp_path / "nope.ckpt"), "--out", str(out)])
    assert "checkpoint not found" in line and not out.exists()
    line = refused(monkeypatch, capsys, ["--out", str(out), *run_args(tmp_path)])
    assert "needs --ckpt_path" in line and not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    line = refused(monkeypatch, capsys, ["--ckpt_path", str(checkpoint), "--out", str(out), *run_args(tmp_path)])
    assert "exists and is not empty" in line and [p.name for p in out.iterdir()] == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "keep"
    line = refused(monkeypatch, capsys, ["--ckpt_path", str(checkpoint), "--out", str(out), "--weights", "some"])
    assert "--weights must be full or adapted-only" in line
    # Random base weights cannot be rebuilt: adapted-only needs a tag or a file (checked before the threshold pass).
    random_base = ["--weights", "adapted-only", *demo_args(shapes_dir, tmp_path)]
    line = refused(monkeypatch, capsys, ["--ckpt_path", str(checkpoint), "--out", str(tmp_path / "new"), *random_base])
    assert "needs base weights" in line and not (tmp_path / "new").exists()


def test_an_empty_out_folder_is_used_and_a_failed_write_leaves_nothing(full, tmp_path, monkeypatch):
    classifier = torch.load(full / "classifier.pt", weights_only=True)
    model = open_clip.create_model(TINY)
    out = tmp_path / "empty"
    out.mkdir()
    files = write_export(out, model, classifier, [])
    assert set(files) == {"README.md", "model.pt", "classifier.pt", f"{TINY}.json"}
    assert {p.name: p.stat().st_size for p in out.iterdir()} == files

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(InputError, match="cannot write .*No space left on device"):
        write_export(tmp_path / "other", model, classifier, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no folder, no hidden half-written one


def test_features_of_the_snippet_are_those_of_uft(full, predicted, shapes_dir):
    """The snippet's image features are the module's: open_clip's transform equals uft's evaluation transform on
    these images (bicubic resize, centre crop, CLIP normalisation)."""
    from PIL import Image

    from uft.clip import preprocess_of
    from uft.data.transforms import eval_transform

    open_clip.add_model_config(full)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(full / "model.pt"))
    rows, _ = predicted
    image = Image.open(shapes_dir / rows[0]["path"]).convert("RGB")
    assert torch.equal(preprocess(image), eval_transform(preprocess_of(model))(image))
