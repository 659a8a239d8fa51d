"""``podium explain``: Grad-CAM heat maps of a checkpoint's most confident mistakes (course notes 001 §4).

``explain_checkpoint(checkpoint, competition, out_dir)`` is the library entry point (the leaderboard
can call it for a team's own checkpoint submission). It

1. opens the checkpoint the way scoring does: ``inspect_checkpoint`` (size limit, safetensors header
   checked before the library reads it, pickles and ``.pt`` archives refused, the model card checked
   against the competition), the architecture built by name from the torchvision/timm registry and
   the tensors loaded strictly (``harness.checkpoint.registry``); never ``torch.load``;
2. takes the VALIDATION images only: the stratified split of ``public/train.npz`` that ``podium
   baseline`` holds out (fraction and seed read from the run's ``report.json`` beside the checkpoint
   when there is one, else the baseline's defaults); the test set and the private folder are never read;
3. feeds them exactly as checkpoint scoring does (``harness.checkpoint.infer.prepare_batch``: the
   card's input size and normalisation), finds the wrong predictions and sorts them by the
   confidence of the predicted class;
4. computes Grad-CAM (``pytorch_grad_cam.GradCAM``) for the predicted class on the target layer: the
   last module, in the order the forward pass finishes them, whose output is a feature map at least
   ``MIN_SIDE`` pixels on each side (ResNet-50 at 224 px: ``layer4``, 7x7; the demo's ResNet-18 at
   24 px: ``layer1``, 6x6, since ``layer2`` is 3x3 there; at 32 px also ``layer1``, 8x8), or ``layer=``
   by name. Coarser maps were measured not to single out the digits: on the digits competition the
   mean heat on the digit's pixels over that on the empty border was 1.17 for resnet18's 4x4
   ``layer2`` at 32 px and 1.15 for its 4x4 ``layer1`` at 16 px, but 2.10 for the 8x8 ``layer1`` at
   32 px and 1.56 for the 6x6 ``layer1`` at 24 px (one model each);
5. writes ``gradcam_grid.png`` (image, heat map overlay, true and predicted class), one overlay PNG
   per image, ``explain.json`` and ``index.html`` (every string escaped).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.competition import Competition, load_competition, load_train
from harness.errors import PodiumError

MIN_SIDE = 6
DEFAULT_VAL_FRACTION, DEFAULT_SEED = 0.1, 42  # podium baseline's defaults (BaselineConfig)


@dataclass
class ExplainResult:
    out_dir: Path
    layer: str
    val_images: int
    val_accuracy: float
    wrong: int
    items: list[dict]  # one per explained image, most confident first
    cams: np.ndarray  # float32 [n, H, W] in [0, 1], at each image's own size (the dataset's H x W)
    notes: list[str] = field(default_factory=list)


def load_checkpoint_model(checkpoint: str | Path, competition: Competition):
    """(model in eval mode, InspectedCheckpoint) through the harness's safe path; CheckpointError on refusal."""
    from harness.checkpoint import inspect_checkpoint
    from harness.checkpoint.registry import build_untrained, load_strict

    inspected = inspect_checkpoint(checkpoint, competition)
    model = build_untrained(inspected.card)
    load_strict(model, inspected.header, inspected.path, inspected.card)
    return model.eval(), inspected


def validation_split(checkpoint: Path, val_fraction: float | None, seed: int | None) -> tuple[float, int, str]:
    """The split the run held out: given, else from report.json beside the checkpoint, else the defaults."""
    source = "given"
    report = checkpoint.parent / "report.json"
    if (val_fraction is None or seed is None) and report.is_file():
        try:
            config = json.loads(report.read_text(encoding="utf-8")).get("config", {})
            val_fraction = config.get("val_fraction") if val_fraction is None else val_fraction
            seed = config.get("seed") if seed is None else seed
            source = f"{report.name} beside the checkpoint"
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    if val_fraction is None or seed is None:
        source = "podium baseline's defaults"
    val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    seed = DEFAULT_SEED if seed is None else int(seed)
    if not 0 < val_fraction < 1:
        raise PodiumError(f"--val-fraction must be between 0 and 1 to explain validation images, got {val_fraction}.")
    return val_fraction, seed, source


def find_target_layer(model, input_size: int, name: str | None = None) -> tuple[str, object]:
    """(name, module) of the Grad-CAM target layer (module docstring, step 4)."""
    import torch

    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules:
            close = [n for n in modules if n.endswith(name) or name in n][:5]
            raise PodiumError(f"The model has no layer named {name!r}." + (f" Did you mean {', '.join(close)}?" if close else ""))
        return name, modules[name]
    finished: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: finished.append((n, tuple(out.shape)))
                                     if isinstance(out, torch.Tensor) else None)
             for n, m in modules.items() if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    maps = [(n, s) for n, s in finished if len(s) == 4 and s[2] >= MIN_SIDE and s[3] >= MIN_SIDE]
    if not maps:
        raise PodiumError(
            f"{type(model).__name__} has no convolutional feature map of at least {MIN_SIDE}x{MIN_SIDE} pixels at "
            f"input size {input_size}; Grad-CAM needs one. Name a layer with --layer."
        )
    chosen = maps[-1][0]
    return chosen, modules[chosen]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def predict_probabilities(model, images: np.ndarray, spec, batch_size: int = 256) -> np.ndarray:
    """float64 softmax [M, C] for uint8 images [M,H,W,3], fed as checkpoint scoring feeds them."""
    import torch

    from harness.checkpoint.infer import prepare_batch

    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for lo, hi in _batches(len(images), batch_size):
            x = prepare_batch(torch.from_numpy(np.ascontiguousarray(images[lo:hi])), spec, mean, std)
            out.append(torch.softmax(model(x).float(), dim=1).double().numpy())
    return np.concatenate(out) if out else np.empty((0, 0))


def gradcam_maps(model, images: np.ndarray, targets: np.ndarray, spec, layer, batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps float32 [M, H, W] in [0, 1] for uint8 images [M,H,W,3] and class indices ``targets``,
    at the images' own size (pytorch-grad-cam computes them at the model's input size)."""
    import torch
    import torch.nn.functional as F
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from harness.checkpoint.infer import prepare_batch

    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    height, width = images.shape[1:3]
    maps = []
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for lo, hi in _batches(len(images), batch_size):
            x = prepare_batch(torch.from_numpy(np.ascontiguousarray(images[lo:hi])), spec, mean, std).contiguous()
            grey = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets[lo:hi]])
            grey = torch.from_numpy(np.asarray(grey, dtype=np.float32))[:, None]
            if grey.shape[-2:] != (height, width):
                grey = F.interpolate(grey, size=(height, width), mode="bilinear", align_corners=False)
            maps.append(grey[:, 0].clamp(0, 1).numpy())
    return np.concatenate(maps) if maps else np.empty((0, height, width), dtype=np.float32)


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """uint8 RGB: the heat map (jet) over the image, half and half (pytorch-grad-cam's show_cam_on_image)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=0.5)


def _save_png(array: np.ndarray, path: Path, min_side: int = 128) -> None:
    from PIL import Image

    img = Image.fromarray(array)
    scale = max(1, -(-min_side // min(img.size)))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)


def plot_grid(images: np.ndarray, cams: np.ndarray, items: list[dict], path: Path, title: str) -> Path:
    """Each explained image twice (as fed, and with its heat map), titled with its true and predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(items)
    cols = min(4, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.2 * 2 * cols, 2.5 * rows + 0.6), squeeze=False)
    try:
        for ax in axes.flat:
            ax.axis("off")
        for k, item in enumerate(items):
            r, c = divmod(k, cols)
            left, right = axes[r][2 * c], axes[r][2 * c + 1]
            left.imshow(images[k], interpolation="nearest")
            left.set_title(f"true {item['true']}", fontsize=9)
            right.imshow(overlay(images[k], cams[k]), interpolation="nearest")
            right.set_title(f"pred {item['predicted']} ({item['confidence']:.0%})", fontsize=9,
                            color="tab:red" if item["wrong"] else "black")
        if n == 0:
            axes[0][0].text(0, 0.5, "nothing to show", fontsize=12)
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_html(result: ExplainResult, path: Path, title: str, meta: dict) -> Path:
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{item['rank']}</td><td>{item['val_row']}</td><td>{esc(item['true'])}</td>"
        f"<td>{esc(item['predicted'])}</td><td>{item['confidence']:.1%}</td>"
        f"<td><img src=\"{esc(item['overlay'])}\" alt=\"Grad-CAM of validation row {item['val_row']}\" width=\"128\"></td></tr>"
        for item in result.items
    )
    notes = "".join(f"<li>{esc(note)}</li>" for note in result.notes)
    facts = "".join(f"<dt>{esc(str(k))}</dt><dd>{esc(str(v))}</dd>" for k, v in meta.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}dt{{font-weight:bold}}img{{image-rendering:pixelated}}</style>
</head><body>
<h1>{esc(title)}</h1>
<dl>{facts}</dl>
<ul>{notes}</ul>
<p>Grad-CAM of the predicted class: red is where the evidence for that class lies.</p>
<img src="gradcam_grid.png" alt="grid of the explained validation images">
<table><thead><tr><th>#</th><th>validation row</th><th>true</th><th>predicted</th><th>confidence</th><th>Grad-CAM</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def explain_checkpoint(
    checkpoint: str | Path,
    competition: str | Path | Competition,
    out_dir: str | Path,
    images: int = 16,
    *,
    val_fraction: float | None = None,
    seed: int | None = None,
    layer: str | None = None,
    threads: int | None = None,
) -> ExplainResult:
    """Grad-CAM of the ``images`` most confidently wrong validation predictions of ``checkpoint``;
    writes ``out_dir`` (gradcam_grid.png, overlays/, explain.json, index.html). Runs on the CPU."""
    import torch

    from baseline.data import stratified_split

    if images < 1:
        raise PodiumError(f"--images must be at least 1, got {images}.")
    if threads:
        torch.set_num_threads(threads)
    checkpoint = Path(checkpoint)
    competition = competition if isinstance(competition, Competition) else load_competition(competition)
    model, inspected = load_checkpoint_model(checkpoint, competition)
    val_fraction, seed, split_source = validation_split(checkpoint, val_fraction, seed)
    all_images, labels = load_train(competition)
    _, val_idx = stratified_split(labels, val_fraction, seed)
    if len(val_idx) == 0:
        raise PodiumError("The validation split is empty; raise --val-fraction.")
    val_images, val_labels = all_images[val_idx], labels[val_idx]

    spec = inspected.input
    probs = predict_probabilities(model, val_images, spec)
    predicted = probs.argmax(1)
    confidence = probs[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != val_labels)
    notes = []
    if len(wrong):
        chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:images]
        if len(wrong) < images:
            notes.append(f"only {len(wrong)} validation image(s) are wrong; all are shown")
    else:
        chosen = np.argsort(confidence, kind="stable")[:images]
        notes.append("no validation image is wrong: the least confident right ones are shown instead")

    layer_name, layer_module = find_target_layer(model, spec.size, layer)
    cams = gradcam_maps(model, val_images[chosen], predicted[chosen], spec, layer_module)

    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    classes = competition.classes
    items = []
    for rank, (row, cam) in enumerate(zip(chosen, cams), start=1):
        name = f"overlays/{rank:03d}.png"
        _save_png(overlay(val_images[row], cam), out / name)
        items.append({
            "rank": rank,
            "val_row": int(row),  # position in the validation split
            "train_index": int(val_idx[row]),  # row of public/train.npz
            "true": classes[int(val_labels[row])],
            "predicted": classes[int(predicted[row])],
            "confidence": float(confidence[row]),
            "wrong": bool(predicted[row] != val_labels[row]),
            "overlay": name,
        })
    result = ExplainResult(
        out_dir=out, layer=layer_name, val_images=int(len(val_idx)),
        val_accuracy=float(np.mean(predicted == val_labels)), wrong=int(len(wrong)), items=items, cams=cams,
        notes=notes,
    )
    card = inspected.card
    title = f"Grad-CAM: the most confidently wrong validation images ({card.library} {card.arch} on {competition.name})"
    meta = {
        "checkpoint": checkpoint.name,
        "model": f"{card.library} {card.arch}, input {spec.size} px",
        "target layer": layer_name,
        "validation split": f"{len(val_idx)} images (fraction {val_fraction}, seed {seed}, from {split_source})",
        "validation accuracy": f"{result.val_accuracy:.4f} ({len(wrong)} wrong)",
    }
    plot_grid(val_images[chosen], cams, items, out / "gradcam_grid.png", title)
    write_html(result, out / "index.html", title, meta)
    summary = {**meta, "val_images": result.val_images, "val_accuracy": result.val_accuracy, "wrong": result.wrong,
               "notes": notes, "items": items}
    (out / "explain.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result
