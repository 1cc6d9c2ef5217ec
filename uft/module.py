"""The one LightningModule: a frozen CLIP, learnable prompt context and norm affines, an unsupervised objective."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from uft.clip import encode_text_embeddings, load_clip, tokenize, visual_norm_parameters
from uft.errors import InputError
from uft.metrics import OpenSetMetrics
from uft.objectives import Objective
from uft.prompts import PromptLearner

CONFIDENCE_KEY = "uft_confidence_weights"
EVAL_SPLITS = ("test", "target")


class UFTModule(LightningModule):
    """Unsupervised fine-tuning of a frozen CLIP on unlabeled target images.

    Trains CoOp-style prompt context and/or the affine parameters of the image tower's norm layers with an
    interchangeable unsupervised ``objective`` on ``logit_scale * cos(image, class prompt)``. The whole CLIP stays
    frozen and in eval mode. Evaluation uses plain cosine similarities (temperature 1).

    Args:
        class_names: names of the K known classes (linked from the data module).
        objective: the unsupervised loss, e.g. ``uft.objectives.UEO``.
        model_name: open_clip architecture (``ViT-B-16``) or ``hf-hub:org/repo`` name.
        pretrained: open_clip pretrained tag (``openai``), local checkpoint file, or empty for random weights.
        ctx_init: words whose embeddings initialise the prompt context (their count is the context length).
        tune: which parameters train: ``both``, ``prompt`` (context only) or ``visual`` (norm affines only).
        logit_scale: multiplier of cosine similarities in the training objective.
        prompt_lr: learning rate of the prompt context.
        visual_lr: learning rate of the visual norm affines.
        optimizer: optimiser class and arguments; receives the two parameter groups with their learning rates.
        scheduler: learning-rate scheduler stepped every iteration; default cosine annealing over the whole run.
    """

    def __init__(
        self,
        class_names: list[str],
        objective: Objective,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        ctx_init: str = "a photo of a",
        tune: Literal["both", "prompt", "visual"] = "both",
        logit_scale: float = 100.0,
        prompt_lr: float = 1e-4,
        visual_lr: float = 1e-4,
        optimizer: OptimizerCallable = torch.optim.SGD,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["objective", "optimizer", "scheduler"])
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.clip, self.preprocess = load_clip(model_name, pretrained)
        self.prompts = PromptLearner(
            class_names, lambda texts: tokenize(model_name, texts), self.clip.token_embedding, ctx_init
        )
        self.prompts.ctx.requires_grad_(tune in ("both", "prompt"))
        self.visual_norms = visual_norm_parameters(self.clip.visual)
        for p in self.visual_norms:
            p.requires_grad_(tune in ("both", "visual"))
        self.metrics = nn.ModuleDict({split: OpenSetMetrics(num_known=len(class_names)) for split in EVAL_SPLITS})
        self.confidence_weights: Tensor | None = None
        self._eval_text: Tensor | None = None
        # Checkpoints hold only trained parameters; the frozen CLIP is rebuilt from `model_name`/`pretrained`.
        self.strict_loading = False

    # ---------------------------------------------------------------- features
    def text_features(self) -> Tensor:
        """L2-normalised features of the K class prompts, with gradients to the context."""
        feats = encode_text_embeddings(self.clip, self.prompts(), self.prompts.tokens)
        return F.normalize(feats, dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images, normalize=True)

    def cosine(self, images: Tensor, text: Tensor | None = None) -> Tensor:
        """Cosine similarities (N, K) between images and the class prompts."""
        return self.image_features(images) @ (self.text_features() if text is None else text).T

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # BatchNorm statistics stay frozen and dropout stays off while the affines train
        return self

    # ---------------------------------------------------------------- training
    def on_train_start(self) -> None:
        if not self.objective.needs_confidence:
            return
        loader = self.trainer.datamodule.unlabeled_target_dataloader()
        if self.confidence_weights is None:
            self.confidence_weights = self.compute_confidence(loader)
        elif len(self.confidence_weights) != len(loader.dataset):
            raise InputError(
                f"the checkpoint's confidence table covers {len(self.confidence_weights)} target images but the "
                f"target set now has {len(loader.dataset)}: resume with the data the run started with"
            )
        self.confidence_weights = self.confidence_weights.to(self.device)

    @torch.no_grad()
    def compute_confidence(self, loader) -> Tensor:
        """One pass over the target set with the current (zero-shot) weights; confidences stored by sample index."""
        was_training = self.training
        self.eval()
        text = self.text_features()
        table = torch.zeros(len(loader.dataset), device=self.device)
        for images, index in loader:
            cosine = self.cosine(images.to(self.device), text)
            table[index.to(self.device)] = self.objective.confidence(cosine).float()
        self.train(was_training)
        return table

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, index = batch
        logits = self.hparams.logit_scale * self.cosine(images)
        weights = self.confidence_weights[index] if self.objective.needs_confidence else None
        loss = self.objective(logits, weights)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def configure_optimizers(self):
        groups = []
        if self.prompts.ctx.requires_grad:
            groups.append({"params": [self.prompts.ctx], "lr": self.hparams.prompt_lr, "name": "prompt"})
        if self.visual_norms and self.visual_norms[0].requires_grad:
            groups.append({"params": self.visual_norms, "lr": self.hparams.visual_lr, "name": "visual_norms"})
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            steps = max(int(self.trainer.estimated_stepping_batches), 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        else:
            scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- evaluation
    def _split_name(self, dataloader_idx: int) -> str:
        return self.trainer.datamodule.eval_splits[dataloader_idx]

    def _eval_start(self) -> None:
        with torch.no_grad():
            self._eval_text = self.text_features()

    def _eval_step(self, batch, dataloader_idx: int) -> None:
        images, labels, _ = batch
        self.metrics[self._split_name(dataloader_idx)].update(self.cosine(images, self._eval_text), labels)

    def _eval_end(self) -> None:
        for split, metric in self.metrics.items():
            if metric.update_called and not self.trainer.sanity_checking:
                for name, value in metric.compute().items():
                    self.log(f"{split}/{name}", value, add_dataloader_idx=False)
            metric.reset()
        self._eval_text = None

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_end()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_end()

    def on_predict_epoch_start(self) -> None:
        self._eval_start()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        images, index = batch
        probs = torch.softmax(self.cosine(images, self._eval_text), dim=-1)
        msp, pred = probs.max(dim=-1)
        return {"index": index, "pred": pred, "msp": msp}

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trained = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
        if self.confidence_weights is not None:
            checkpoint[CONFIDENCE_KEY] = self.confidence_weights.cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        weights = checkpoint.get(CONFIDENCE_KEY)
        self.confidence_weights = None if weights is None else weights.to(self.device)
