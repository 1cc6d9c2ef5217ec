"""What a training step costs, side by side: uft's step, a reference-style step and the image tower alone.

On one random-initialised open_clip architecture, one batch of random images and K class names, in one process:

- ``uft``: ``UFTModule.training_step`` (UEO, prompt context and visual norm affines trained) plus backward and
  optimiser step: the text tower runs only up to the longest prompt's end-of-text token;
- ``uft chunked``: the same with ``text_chunk_size`` (activation checkpointing of the text tower);
- ``uft online``: the same step adapting online (``OnlineAdaptation``, continual): UEO's weights come from the
  zero-shot model's cosines on the batch, one more image-tower forward without gradient per step;
- ``reference``: the same step with the class prompts encoded over the full context (77 tokens), as prompt-learning
  code usually does;
- ``image only``: forward and backward of the image tower for the batch (norm affines trained): the limit.

and evaluation throughput: the module's scoring of a batch against cached class features vs a plain
``encode_image`` loop. Prints one Markdown table: milliseconds per step, images per second, the ratios (to the
reference, the image tower alone and the ``uft`` step), and the activations kept for the backward pass (bytes of
the tensors autograd saves; on CUDA also the peak allocated memory). Run from the repository root::

    python bench/step_bench.py                      # CPU: ViT-B-32, batch 32, K = 65 and 345 (a few minutes)
    python bench/step_bench.py --device cuda --precision bf16-mixed --model ViT-B-16 --batch 64 256
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from uft.clip import pooled_length
from uft.data.batch import Batch
from uft.module import UFTModule
from uft.objectives import UEO
from uft.online import OnlineAdaptation

OFFICE_HOME = Path(__file__).resolve().parents[1] / "data" / "officehome" / "classes.txt"
NOUNS = (
    "apple bear bridge camel candle cloud crab drum fence flower guitar horse kite lamp lion moon owl pear pig".split()
)


def class_names(k: int) -> list[str]:
    """K distinct class names of realistic lengths: Office-Home's 65; beyond, DomainNet-like ones (two words, and
    DomainNet's longest, "The Great Wall of China", which sets the text length as it would there), then three-word
    ones (ImageNet-size label sets)."""
    office = OFFICE_HOME.read_text().split()
    if k <= len(office):
        return office[:k]
    pairs = [f"{a}_{b}" for a in NOUNS for b in NOUNS if a != b]
    triples = [f"{a}_{b}_{c}" for a in NOUNS for b in NOUNS for c in NOUNS if len({a, b, c}) == 3]
    return (office[:64] + ["The_Great_Wall_of_China"] + pairs + triples)[:k]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def saved_for_backward(module: torch.nn.Module):
    """Bytes of the activations autograd keeps for the backward pass while the block runs (a one-element list):
    each storage counted once, the module's own parameters and buffers not at all (they exist anyway)."""
    own = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def timed(fn, module, device: torch.device, steps: int, warmup: int) -> tuple[float, int, int]:
    """(median seconds per call, bytes saved for backward in one call, CUDA peak bytes or 0). The first warm-up
    call (at least one) measures what is saved for backward."""
    with saved_for_backward(module) as saved:
        fn()
    for _ in range(warmup - 1):
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return statistics.median(times), saved[0], peak


def make_module(args, k: int, device: torch.device, **kwargs) -> UFTModule:
    torch.manual_seed(0)
    module = UFTModule(class_names(k), UEO(), model_name=args.model, pretrained=None, **kwargs).to(device)
    module.train()
    module.table.values = torch.rand(args.batch_max, device=device) * 0.9 + 0.1
    return module


def train_step(module: UFTModule, optimizer, images, index, autocast):
    def step():
        with autocast():
            loss = module.training_step(Batch(images, index, torch.ones_like(index, dtype=torch.bool)), 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def image_only_step(module: UFTModule, optimizer, images, autocast):
    def step():
        with autocast():
            loss = module.image_features(images).float().square().sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def checkpoint_size(args) -> tuple[int, int]:
    """(bytes of a uft checkpoint of the model after one step: trained parameters, optimiser state, a table of
    10,000 samples; bytes of the whole model's parameters)."""
    module = UFTModule(class_names(65), UEO(), model_name=args.ckpt_model, pretrained=None)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    module.text_features().sum().backward()
    optimizer.step()
    module.table.values = torch.rand(10_000)
    checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    module.on_save_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    model_bytes = sum(p.numel() * p.element_size() for p in module.clip.parameters())
    return buffer.tell(), model_bytes


def eval_loop(module: UFTModule, images, batches: int, autocast, plain: bool):
    def run():
        with torch.no_grad(), autocast():
            for _ in range(batches):
                if plain:
                    module.clip.encode_image(images)
                else:
                    module.cosine(images, module._eval_text)

    return run


def measure(args, batch: int, k: int, device: torch.device, autocast) -> list[dict]:
    """Every row for one batch size and class count."""
    module = make_module(args, k, device)
    size = module.preprocess.size
    images = torch.randn(batch, 3, size, size, device=device)
    index = torch.arange(batch, device=device)
    optimizer = module.configure_optimizers()["optimizer"]

    def run():
        return timed(train_step(module, optimizer, images, index, autocast), module, device, args.steps, args.warmup)

    if args.multiple > 1:  # positions rounded up, to see what padding costs
        module.text_length = pooled_length(module.clip, module.prompts.tokens, args.multiple)
    truncated, measured = module.text_length, {}
    if "uft" in args.rows:
        measured["uft"] = run()
    if "chunked" in args.rows:
        module.hparams.text_chunk_size = args.chunk
        measured["uft chunked"] = run()
        module.hparams.text_chunk_size = None
    if "online" in args.rows:  # what the constructor and on_train_start do, over a stream of this one batch
        module.online = OnlineAdaptation()
        module.online.keep_start(module.adapted_parameters)
        module.online.record.start(batch, k, device)
        measured["uft online"] = run()  # the zero-shot class features are computed once, in the warm-up
        module.online = None
    if "reference" in args.rows:
        module.text_length = module.prompts.tokens.shape[1]  # the full context: the reference-style step
        measured["reference"] = run()
        module.text_length = truncated
    module.prompts.ctx.requires_grad_(False)
    visual = torch.optim.SGD(module.visual_norms, lr=1e-4)
    measured["image only"] = timed(
        image_only_step(module, visual, images, autocast), module, device, args.steps, args.warmup
    )
    module.prompts.ctx.requires_grad_(True)

    limit = measured["image only"][0]
    reference = measured["reference"][0] if "reference" in measured else float("nan")
    offline = measured["uft"][0] if "uft" in measured else float("nan")
    rows = [
        {
            "batch": batch,
            "classes": k,
            "row": name,
            "text_positions": {"reference": module.prompts.tokens.shape[1], "image only": None}.get(name, truncated),
            "ms_per_step": 1000 * seconds,
            "images_per_s": batch / seconds,
            "vs_reference": seconds / reference,
            "vs_image_only": seconds / limit,
            "vs_uft": seconds / offline,
            "uft_images_per_s": batch / offline,
            "saved_mb": saved / 1e6,
            "peak_mb": peak / 1e6,
        }
        for name, (seconds, saved, peak) in measured.items()
    ]
    if "eval" not in args.rows:
        return rows
    # Evaluation: the class features cached once, no gradients, against the plain image-tower loop.
    module.eval()
    with torch.no_grad(), autocast():
        module._eval_text = module.text_features()
    ours = timed(
        eval_loop(module, images, args.eval_batches, autocast, plain=False), module, device, args.steps, args.warmup
    )
    base = timed(
        eval_loop(module, images, args.eval_batches, autocast, plain=True), module, device, args.steps, args.warmup
    )
    n = batch * args.eval_batches
    rows.append(
        {
            "batch": batch,
            "classes": k,
            "row": "evaluation",
            "images_per_s": n / ours[0],
            "plain_images_per_s": n / base[0],
            "vs_plain": base[0] / ours[0],
        }
    )
    return rows


def table(results: list[dict]) -> list[str]:
    lines = [
        "| batch | K | step | text positions | ms/step | images/s | vs reference | vs image only | vs uft | "
        "kept for backward (MB) | peak (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["row"] == "evaluation":
            lines.append(
                f"| {r['batch']} | {r['classes']} | evaluation | | | {r['images_per_s']:.1f} (plain encode_image "
                f"{r['plain_images_per_s']:.1f}: {r['vs_plain']:.2f}x) | | | | | |"
            )
        else:
            # A stream's throughput beside the offline step's on the same batch.
            beside = f" (offline {r['uft_images_per_s']:.1f})" if r["row"] == "uft online" else ""
            lines.append(
                f"| {r['batch']} | {r['classes']} | {r['row']} | {r['text_positions'] or ''} | "
                f"{r['ms_per_step']:.0f} | {r['images_per_s']:.1f}{beside} | {r['vs_reference']:.2f}x | "
                f"{r['vs_image_only']:.2f}x | {r['vs_uft']:.2f}x | {r['saved_mb']:.0f} | {r['peak_mb']:.0f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--classes", type=int, nargs="+", default=[65, 345])
    parser.add_argument("--chunk", type=int, default=64, help="text_chunk_size of the 'uft chunked' row")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before (at least one)")
    parser.add_argument("--eval-batches", type=int, default=3)
    parser.add_argument("--ckpt-model", default="ViT-B-16", help="architecture of the checkpoint-size line")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["uft", "chunked", "online", "reference", "eval"],
        help="rows besides 'image only' (online: 'uft online')",
    )
    parser.add_argument("--multiple", type=int, default=1, help="round the text positions up to this multiple")
    args = parser.parse_args()
    args.batch_max = max(args.batch)
    device = torch.device(args.device)

    def autocast():
        if args.precision == "bf16-mixed":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    results = [row for batch in args.batch for k in args.classes for row in measure(args, batch, k, device, autocast)]
    ckpt, model = checkpoint_size(args)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"\n{args.model}, random weights, {device} ({where}, {torch.get_num_threads()} CPU threads), "
        f"{args.precision}, torch {torch.__version__}\n"
    )
    print("\n".join(table(results)))
    print(
        f"\nA {args.ckpt_model} checkpoint (trained parameters, SGD momentum, a 10,000-sample table): "
        f"{ckpt / 1e6:.2f} MB, for a model of {model / 1e6:.0f} MB."
    )
    if args.json:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.json.write_text(json.dumps({**record, "checkpoint_bytes": ckpt, "model_bytes": model}, indent=2))


if __name__ == "__main__":
    main()
