"""The one LightningModule: a frozen CLIP, learnable prompt context and norm affines, an unsupervised objective."""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from uft.checkpoint_contents import IDENTITY_KEY, check_loadable, keep_trained, model_identity
from uft.clip import (
    cut_texts,
    encode_text_embeddings,
    load_clip,
    pooled_length,
    store_frozen,
    template_features,
    text_tower,
    tokenize,
    visual_norm_parameters,
)
from uft.data.batch import Batch
from uft.data.contract import TargetData, TargetStream
from uft.distributed import any_process, gather_batch
from uft.errors import InputError
from uft.evaluation import SplitEvaluation
from uft.objectives import Objective
from uft.online import OnlineAdaptation, check_online
from uft.preflight import check_evaluation, check_zero_shot, spread
from uft.prompts import PromptLearner, check_prompt_lengths
from uft.schedule import CosineToZero, plan_schedule
from uft.scores import MSP, HistogramSplit, OODScore, ThresholdRule, open_set_decision, unknown_threshold
from uft.selection import SELECTION_SPLIT, objective_on, selection_values
from uft.target_table import TargetTable, cosine_over


class UFTModule(LightningModule):
    """Unsupervised fine-tuning of a frozen CLIP on unlabeled target images.

    Trains CoOp-style prompt context and/or the affine parameters of the image tower's norm layers with an
    interchangeable unsupervised ``objective`` on ``logit_scale * cos(image, class prompt)``. The whole CLIP stays
    frozen and in eval mode. Evaluation uses plain cosine similarities (temperature 1).

    On several processes the objective sees the global batch: each process's logits are gathered (with
    gradients) before the loss, so batch-level terms and the loss itself do not depend on the number of processes
    (:mod:`uft.distributed` shows why the gradient scale is right). What the module needs from the data beyond
    batches is the small :class:`~uft.data.contract.TargetData` interface.

    Args:
        class_names: names of the K known classes (linked from the data module).
        objective: the unsupervised loss, e.g. ``uft.objectives.UEO``; none for a zero-shot model (no ``fit``).
        model_name: open_clip architecture (``ViT-B-16``) or ``hf-hub:org/repo`` name; the families uft adapts (and
            those it refuses in one line) are the table of ``docs/models.md#backbones``.
        pretrained: open_clip pretrained tag (``openai``), local checkpoint file, or empty for random weights.
        ctx_init: words whose embeddings initialise the prompt context (their count is the context length).
        tune: which parameters train: ``both``, ``prompt`` (context only) or ``visual`` (norm affines only).
        logit_scale: multiplier of cosine similarities in the training objective, for every family: the model's own
            learned ``logit_scale`` and a sigmoid model's ``logit_bias`` (SigLIP's) are not read (a bias alike for
            every class does not change the softmax over classes).
        prompt_lr: learning rate of the prompt context.
        visual_lr: learning rate of the visual norm affines.
        optimizer: optimiser class and arguments; receives the two parameter groups with their learning rates.
        scheduler: learning-rate scheduler stepped every iteration; default cosine annealing to zero over the whole
            run. A resumed run whose length changed (``max_epochs``, batch size) re-plans the default schedule over
            the new number of steps from the step it is at, and says so.
        zero_shot_templates: evaluate with fixed class texts averaged over these templates (``"a photo of a {}."``)
            instead of the prompt context: the template-ensemble zero-shot baseline (evaluation only).
        eval_splits: names of the evaluation dataloaders, in their order, for a data module that does not declare
            them; default: the data's own (:class:`~uft.data.contract.TargetData` ``eval_splits``), else
            ``["test", "target"]``.
        frozen_dtype: storage type of the frozen CLIP weights: ``bfloat16`` or ``float16`` halve their memory and
            need a mixed ``trainer.precision`` (``bf16-mixed``, ``16-mixed``). Trained parameters stay float32.
        text_chunk_size: encode the class prompts this many at a time, recomputing each chunk's text-tower
            activations in the backward pass (activation checkpointing): for thousands of classes, the memory kept
            for the backward pass no longer grows with the class count, for one more text forward pass per step.
            Default: all prompts at once. A causal text tower always runs only up to the longest prompt's
            end-of-text token, and the start token and context, alike in every prompt, run once (both exact for a
            causal tower; other towers run over the full context: :class:`uft.clip.TextPaths`).
        ood_score: how "known" an image looks, from its cosine similarities to the class prompts: ranks images for
            AUROC/FPR95 and drives the unknown decision (``uft.scores.MSP``, ``MaxLogit``, ``Energy``); default
            MSP at temperature 1, the paper's.
        unknown_rule: how the score threshold below which an image is called unknown is chosen, without labels
            (``uft.scores.HistogramSplit``, ``UnknownShare``, ``FixedThreshold``). Evaluation applies it to each
            split's scores, prediction to the target set's. Default ``HistogramSplit``: it assumes no unknown
            share (which a user rarely knows) and needs no score-specific value.
        online: adapt online (``configs/online.yaml``): one pass over the target list in its order, each global
            batch predicted before the objective learns from it (the ``online`` split of ``metrics.json``, and the
            stream's ``predictions.csv``); default: offline, epochs over the whole target set.
        norm_rule: which of the image tower's parameters are its norm affines: ``type`` (every normalisation layer,
            by module type) or ``reference`` (by name, as the UEO reference code: ``bn`` or ``ln`` in the name, which
            leaves out the shortcut BatchNorms of open_clip's ResNets; for reproducing the paper's RN50 numbers).
    """

    def __init__(
        self,
        class_names: list[str],
        objective: Objective | None = None,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        ctx_init: str = "a photo of a",
        tune: Literal["both", "prompt", "visual"] = "both",
        logit_scale: float = 100.0,
        prompt_lr: float = 1e-4,
        visual_lr: float = 1e-4,
        optimizer: OptimizerCallable = torch.optim.SGD,
        scheduler: LRSchedulerCallable | None = None,
        zero_shot_templates: list[str] | None = None,
        eval_splits: list[str] | None = None,
        frozen_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        text_chunk_size: int | None = None,
        ood_score: OODScore | None = None,
        unknown_rule: ThresholdRule | None = None,
        online: OnlineAdaptation | None = None,
        norm_rule: Literal["type", "reference"] = "type",
    ) -> None:
        super().__init__()
        _check_arguments(prompt_lr, visual_lr, text_chunk_size)
        # The components are configured, not stored.
        self.save_hyperparameters(ignore=["objective", "optimizer", "scheduler", "ood_score", "unknown_rule", "online"])
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.clip, self.preprocess = load_clip(model_name, pretrained)
        self._build_trained(class_names, model_name, ctx_init, tune, frozen_dtype, norm_rule)
        self.online = online
        if online is not None:
            online.keep_start(self.adapted_parameters)
        self.ood_score = ood_score if ood_score is not None else MSP()
        self.unknown_rule = unknown_rule if unknown_rule is not None else HistogramSplit()
        self.evaluation = SplitEvaluation(len(class_names), self.ood_score, self.unknown_rule, eval_splits, logit_scale)
        self.predict_threshold: float | None = None  # of the unknown decision in prediction
        self.table = TargetTable()  # per-sample state over the target set (the objective's table, exclusions)
        self._eval_text: Tensor | None = None
        self._frozen_text: Tensor | None = None
        # Checkpoints hold only trained parameters; the frozen CLIP is rebuilt from `model_name`/`pretrained`.
        self.strict_loading = False
        # Evaluation deals whole batches to processes: a small split can leave a process without any.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def _build_trained(
        self, class_names: list[str], model_name: str, ctx_init: str, tune: str, frozen: str, norm_rule: str
    ) -> None:
        """The prompt context and the visual norm affines, trainable as ``tune`` says; the rest of CLIP stored as
        ``frozen``."""
        self.prompts = PromptLearner(
            class_names, lambda texts: tokenize(model_name, texts), text_tower(self.clip).token_embedding, ctx_init
        )
        self.prompts.ctx.requires_grad_(tune in ("both", "prompt"))
        check_prompt_lengths(class_names, self.prompts, *cut_texts(model_name, self.prompts.texts))
        self.text_length = pooled_length(self.clip, self.prompts.tokens)  # positions the text tower runs over
        self.visual_norms = visual_norm_parameters(self.clip.visual, norm_rule)
        for p in self.visual_norms:
            p.requires_grad_(tune in ("both", "visual"))
        store_frozen(self.clip, getattr(torch, frozen))

    @property
    def adapted_parameters(self) -> list[nn.Parameter]:
        """The prompt context and the visual norm affines, in this order (trained or not, as ``tune`` says)."""
        return [self.prompts.ctx, *self.visual_norms]

    # ---------------------------------------------------------------- features
    def text_features(self) -> Tensor:
        """L2-normalised features of the K class prompts, with gradients to the context."""
        length = self.text_length
        embeddings, tokens = self.prompts(length), self.prompts.tokens
        chunk, shared = self.hparams.text_chunk_size, self.prompts.shared_prefix
        feats = encode_text_embeddings(self.clip, embeddings, tokens, length, chunk, shared)
        return F.normalize(feats, dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images, normalize=True)

    def cosine(self, images: Tensor, text: Tensor | None = None) -> Tensor:
        """Cosine similarities (N, K) between images and the class prompts, in float32 or wider (also under
        autocast: the logit scale of 100 would magnify bfloat16's rounding; ``64-true`` keeps float64)."""
        return self.similarity(self.image_features(images), self.text_features() if text is None else text)

    @staticmethod
    def similarity(image: Tensor, text: Tensor) -> Tensor:
        """Cosine similarities of normalised image and class features, in float32 or wider."""
        dtype = torch.promote_types(image.dtype, torch.float32)
        with torch.autocast(image.device.type, enabled=False):
            return image.to(dtype) @ text.to(dtype).T

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # BatchNorm statistics stay frozen and dropout stays off while the affines train
        return self

    # ---------------------------------------------------------------- training
    def _target_data(self) -> TargetData:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, TargetData):
            raise InputError(
                f"{type(self.objective).__name__} needs a data module with a confidence pass over the whole target "
                f"set (uft.data.contract.TargetData, e.g. uft.data.datamodule.TargetDataModule), got {datamodule!r}"
            )
        return datamodule

    def _autocast(self):
        """The trainer's precision context (autocast under a mixed precision) for passes outside the steps."""
        trainer = self._trainer
        return trainer.precision_plugin.forward_context() if trainer is not None else contextlib.nullcontext()

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        check_run(self.hparams, self.objective, str(self.trainer.precision), stage, data)
        if stage == "fit":
            trainer = self.trainer
            check_online(
                self.online, self.objective, trainer.max_epochs, trainer.max_steps, getattr(data, "shuffle", False)
            )
        if isinstance(data, TargetData):
            segments = {"target": data.target_segments()} if isinstance(data, TargetStream) else {}
            self.evaluation.serve(data.eval_splits, segments)

    def on_train_start(self) -> None:
        (config,) = self.trainer.lr_scheduler_configs
        note = plan_schedule(config.scheduler, self.trainer.estimated_stepping_batches)
        if note:
            rank_zero_info(note)
        data = self.trainer.datamodule
        if isinstance(data, TargetData):
            self.table.start(data, self.device)
        names = self.hparams.class_names
        if self.online is not None:  # the objective's table comes from each batch: no pass over the target set
            self.online.record.start(self._target_data().num_target_samples, len(names), self.device)
        if self.online is None and self.objective.needs_table:
            data = self._target_data()

            def encode() -> Tensor:  # the zero-shot pass over the target set, which the preflight looks at first
                cosine = self.cosine_table(data.confidence_dataloader(), data.num_target_samples)
                return check_zero_shot(cosine, data, names, rank_zero_warn)

            self.table.prepare(self.objective, data, encode)
            self.table.to_device(self.device)
        elif isinstance(data, TargetData) and self.global_step == 0:
            # No pass over the target set here (online, or no table): the preflight's own, over a spread subset.
            every, count = spread(data.num_target_samples)
            cosine = self.cosine_table(data.confidence_dataloader(every), count)
            check_zero_shot(cosine, data, names, rank_zero_warn, every)

    @property
    def target_table(self) -> Tensor | None:
        """The objective's per-sample table (:class:`~uft.target_table.TargetTable` ``values``)."""
        return self.table.values

    @torch.no_grad()
    def cosine_table(self, loader, num_samples: int, text: Tensor | None = None) -> Tensor:
        """Cosine similarities (``num_samples``, K) of every image ``loader`` yields under the current weights (before
        training: the zero-shot model), by sample index, on every process; NaN rows for unreadable images. The
        confidence pass over the target set, and prediction's pass for its threshold
        (:func:`~uft.target_table.cosine_over`)."""
        was_training = self.training
        self.eval()
        with self._autocast():
            text = self.text_features() if text is None else text
            shape = (num_samples, text.shape[0])
            table = cosine_over(loader, shape, lambda images: self.cosine(images, text), self.device)
        self.train(was_training)
        return table

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        online, optimizer = self.online, self._trainer.optimizers[0] if self._trainer is not None else None
        # Online: the episodic reset, and the zero-shot features for the objective's table (before the forward pass).
        zero_shot_image, zero_shot_text = (
            online.before_step(self, batch, batch_idx, optimizer) if online else (None,) * 2
        )
        image, text = self.image_features(batch.images), self._training_text()
        # The objective sees the global batch: the same loss on every process (see uft.distributed).
        cosine, index = gather_batch(self.similarity(image, text)), gather_batch(batch.index)
        zero_shot = None
        if zero_shot_text is not None:  # the tower at its zero-shot state: the step's own image features
            zero_shot_image = image.detach() if zero_shot_image is None else zero_shot_image
            zero_shot = gather_batch(self.similarity(zero_shot_image, zero_shot_text))
        if online is not None:  # the stream's last batch is padded: the pads (last) are dropped
            cosine, index, zero_shot = online.real_rows(batch_idx, cosine, index, zero_shot)
        # Rows that must not train (unreadable images): known on the host, and agreed by every process.
        if any_process(not batch.all_readable or self.table.any_excluded, self.device):
            keep, found = self.table.trainable(index, gather_batch(batch.readable)[: len(index)])
            if found:
                self._target_data().report_skipped("target", found)
            cosine, index = cosine[keep], index[keep]
            zero_shot = None if zero_shot is None else zero_shot[keep]
            if not len(index):
                return None  # nothing readable in this batch: no step
        if online is not None:  # evaluate before adapting
            online.predicted(batch_idx, index, cosine.detach(), self.ood_score, self.global_step)
        if not self.objective.needs_table:
            table = None
        else:  # offline, rows of the table over the target set; online, made from the batch's zero-shot scores
            table = self.table.rows(index) if online is None else self.objective.prepare(zero_shot)
        loss = self.objective(self.hparams.logit_scale * cosine, table, cosine=cosine)
        groups = optimizer.param_groups if optimizer is not None else []
        self.log("train/loss", loss, prog_bar=True, batch_size=cosine.shape[0])
        for group in groups:  # plain floats: nothing read from the device
            self.log(f"train/lr_{group['name']}", group["lr"], batch_size=cosine.shape[0])
        return loss

    def _training_text(self) -> Tensor:
        if self.prompts.ctx.requires_grad:
            return self.text_features()  # recomputed every step: gradients flow to the context
        if self._frozen_text is None:  # the context is frozen (tune: visual): the class features never change
            with torch.no_grad():
                self._frozen_text = self.text_features()
        return self._frozen_text

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.online is not None:
            self.online.after_step(self.adapted_parameters, batch_idx, self.trainer.optimizers[0])

    def on_train_epoch_end(self) -> None:
        data = self.trainer.datamodule
        if self.online is not None and getattr(data, "target_labeled", False):
            # The stream's labels are read here, by evaluation only: training never sees them.
            segments = data.target_segments() if isinstance(data, TargetStream) else []
            record, rule = self.online.record, self.unknown_rule
            for split, values in record.metrics(data.target_labels(), segments, rule).items():
                for name, value in values.items():
                    self.log(f"{split}/{name}", float(value))

    def configure_optimizers(self):
        groups = []
        if self.prompts.ctx.requires_grad:
            groups.append({"params": [self.prompts.ctx], "lr": self.hparams.prompt_lr, "name": "prompt"})
        if self.visual_norms and self.visual_norms[0].requires_grad:
            groups.append({"params": self.visual_norms, "lr": self.hparams.visual_lr, "name": "visual_norms"})
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            # The length of the run is read at `on_train_start`, once a checkpoint (and the loader's place in the
            # epoch) is restored: `estimated_stepping_batches` here would load the training data too early for that.
            scheduler = CosineToZero(optimizer)
        else:
            scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- evaluation
    def _eval_start(self) -> None:
        templates = self.hparams.zero_shot_templates
        with torch.no_grad(), self._autocast():
            if templates:
                names, chunk = self.hparams.class_names, self.hparams.text_chunk_size
                self._eval_text = template_features(self.clip, self.hparams.model_name, names, templates, chunk)
            else:
                self._eval_text = self.text_features()

    def _report_unreadable(self) -> None:
        # Every process calls this (a collective), and reports the same (which may stop the run everywhere at once).
        for split, indices in self.evaluation.unreadable.gather().items():
            self._target_data().report_skipped(split, indices)

    def _eval_step(self, batch: Batch, dataloader_idx: int) -> None:
        split, batch = self.evaluation.readable(dataloader_idx, batch)
        if len(batch):
            self.evaluation.update(split, self.cosine(batch.images, self._eval_text), batch.labels, batch.index)

    def _eval_end(self) -> None:
        self._report_unreadable()
        computed = self.evaluation.compute(keep=not self.trainer.sanity_checking)
        values = dict(computed)
        if not self.trainer.sanity_checking and isinstance(self.trainer.datamodule, TargetData):
            values[SELECTION_SPLIT] = self._selection_criteria(self.trainer.datamodule)
        for split, split_values in values.items():
            for name, value in split_values.items():
                self.log(f"{split}/{name}", float(value), add_dataloader_idx=False)
        self._eval_text = None
        if self.trainer.state.fn in ("validate", "test"):  # their one evaluation, before metrics.json is written
            check_evaluation(self.evaluation, computed, self.trainer.datamodule, rank_zero_warn)

    def _selection_criteria(self, data: TargetData) -> dict[str, float]:
        """The label-free criteria (:mod:`uft.selection`) on the target set: from the target split's pass when it was
        evaluated, else from a pass over the unlabeled target set (every process holds the same rows)."""
        if self.evaluation.target_cosines is not None:
            index, cosine = self.evaluation.target_cosines
        else:
            table = self.cosine_table(data.confidence_dataloader(), data.num_target_samples, self._eval_text)
            readable = ~table.isnan().any(dim=1)
            index, cosine = readable.nonzero().squeeze(1), table[readable]
        objective, scale = self.objective, self.hparams.logit_scale
        value = objective_on(objective, getattr(objective, "needs_table", False), self.table.values, index, scale)
        return selection_values(cosine, scale, value)

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_end()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    # Testing evaluates exactly as validation does.
    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    def on_predict_epoch_start(self) -> None:
        self._eval_start()
        # The unknown decision's threshold, from the unlabeled target set's scores under the same weights.
        data = self._target_data()
        cosine = self.cosine_table(data.confidence_dataloader(), data.num_target_samples, self._eval_text)
        self.predict_threshold = unknown_threshold(cosine, self.ood_score, self.unknown_rule)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Per image: sample ``index`` and the open-set decision (:func:`~uft.scores.open_set_decision`)."""
        batch = self.evaluation.unreadable.readable("predict", batch)
        cosine = self.cosine(batch.images, self._eval_text)
        return {"index": batch.index, **open_set_decision(cosine, self.ood_score, self.predict_threshold)}

    def on_predict_epoch_end(self) -> None:
        self._report_unreadable()

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep_trained(checkpoint, self)
        self.table.save(checkpoint, self.objective)
        if self.online is not None:
            self.online.record.save(checkpoint)
        checkpoint[IDENTITY_KEY] = model_identity(self.hparams, self.prompts.n_ctx)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        fitting = self._trainer is not None and self.trainer.training
        identity = model_identity(self.hparams, self.prompts.n_ctx)
        check_loadable(checkpoint, identity, set(self.state_dict()), fitting)
        self.table.load(checkpoint)
        if self.online is not None:
            self.online.record.load(checkpoint)


def check_run(hparams, objective: Objective | None, precision: str, stage: str, data) -> None:
    """What a run of ``stage`` needs from the model's configuration, the trainer's precision and the data, checked
    before any work (one line each)."""
    if hparams.frozen_dtype != "float32" and "mixed" not in precision:
        raise InputError(
            f"model.frozen_dtype={hparams.frozen_dtype} needs a mixed trainer.precision (bf16-mixed or 16-mixed), got "
            f"{precision}"
        )
    if stage != "fit":
        return
    if objective is None:
        raise InputError("model.objective is not set: this config is for `uft validate`/`uft test` only")
    if hparams.zero_shot_templates:
        raise InputError("model.zero_shot_templates is an evaluation-only option: remove it to train")
    if objective.uses_labels:
        if not getattr(data, "target_labeled", False):
            raise InputError(
                f"{type(objective).__name__} reads the labels of the target data, which has none: it is an oracle "
                "for analysis and cannot run on unlabeled data"
            )
        rank_zero_warn(f"{type(objective).__name__} is an ORACLE: it reads the target labels (analysis upper bound)")


def _check_arguments(prompt_lr: float, visual_lr: float, text_chunk_size: int | None) -> None:
    for name, lr in (("prompt_lr", prompt_lr), ("visual_lr", visual_lr)):
        if not (math.isfinite(lr) and lr > 0):
            raise InputError(f"model.{name} must be a positive learning rate, got {lr}")
    if text_chunk_size is not None and text_chunk_size < 1:
        raise InputError(f"model.text_chunk_size must be a positive number of classes, got {text_chunk_size}")
