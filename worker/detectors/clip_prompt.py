"""CoOp prompt tuning on a frozen CLIP: learned context vectors before the class names "real" / "fake".

Zhou, Yang, Loy, Liu, "Learning to Prompt for Vision-Language Models", IJCV 2022 (arXiv:2109.01134),
as applied to deepfake detection by Khan, Dang-Nguyen, "CLIPping the Deception: Adapting Vision-Language
Models for Universal Deepfake Detection", ICMR 2024 (arXiv:2402.12927).

The prompt of class c is `[SOT] v_1 ... v_M [class c] . [EOT]`: the M = `n_ctx` context vectors (M x text
width) are shared by both classes and replace the token embeddings of the placeholder prompt
"X X ... X <class>." (CoOp's own construction), the rest are CLIP's frozen token embeddings. The prompt
embeddings then go through CLIP's text tower exactly as `open_clip.model.CLIP.encode_text` does after its
token lookup: + positional embedding -> transformer (batch first, causal `attn_mask`) -> `ln_final` ->
the features at the EOT token (argmax of the token ids) -> `text_projection`.

    logits = exp(logit_scale) * normalise(image features) @ normalise(text features).T
    fake log-odds = logit[fake] - logit[real]      (so sigmoid = the two-class softmax P(fake))

Text features depend only on the context, so inference computes them once and caches them; the cache is
dropped when the context tensor changes (its version counter) and bypassed while gradients are enabled
(training). The adapter file is `torch.save({"ctx": (n_ctx, width), "class_names": [...], "n_ctx": n})`,
written by `dfw train`; CoOp initialises the context with N(0, 0.02).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from worker.detectors.base import TrainableDetector
from worker.detectors.clip_backbone import (
    ClipBackbone,
    ClipBackboneConfig,
    check_image_size,
    declared_image_size,
)
from worker.models import ModelStore

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

CTX_INIT_STD = 0.02  # CoOp's random context initialisation
PLACEHOLDER = "X"


class ClipPromptConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    context: str = Field(default="clip_prompt_context.pt", description="learned context: name or path")
    n_ctx: int = Field(default=16, ge=1, le=64)
    class_names: tuple[str, str] = Field(default=("real", "fake"), description="(real class, fake class)")
    looks_at: Literal["face", "frame"] = "frame"


def prompt_texts(class_names: tuple[str, ...], n_ctx: int) -> list[str]:
    prefix = " ".join([PLACEHOLDER] * n_ctx)
    return [f"{prefix} {name.replace('_', ' ')}." for name in class_names]


def prompt_tokens(tokenizer: Any, class_names: tuple[str, ...], n_ctx: int, length: int) -> torch.Tensor:
    """(C, length) token ids of the placeholder prompts; checks that each X is one token after SOT."""
    tokens: torch.Tensor = tokenizer(prompt_texts(class_names, n_ctx), context_length=length)
    placeholder = int(tokenizer([PLACEHOLDER], context_length=length)[0, 1])
    if not bool((tokens[:, 1 : 1 + n_ctx] == placeholder).all()):
        raise ValueError(f"the tokenizer does not map each {PLACEHOLDER!r} of the prompt to one token")
    return tokens


def check_text_tower(model: Any) -> None:
    """The prompt path needs open_clip's built-in CLIP text tower pooled at the EOT (argmax) token."""
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise ValueError(f"clip_prompt needs an open_clip CLIP text tower; missing {', '.join(missing)}")
    pool = getattr(model, "text_pool_type", "argmax")
    if pool != "argmax":
        raise ValueError(f"clip_prompt needs EOT (argmax) text pooling, the backbone uses {pool!r}")


def encode_prompt_embeddings(model: Any, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """`CLIP.encode_text` from prompt embeddings (C, L, width) instead of token ids: (C, embed_dim)."""
    import torch

    cast_dtype = model.transformer.get_cast_dtype()
    x = prompts.to(cast_dtype) + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)  # open_clip's Transformer takes (N, L, D)
    x = model.ln_final(x)
    pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, torch.nn.Linear):
        projected: torch.Tensor = projection(pooled)
        return projected
    return pooled @ projection


def read_context(path: Path, n_ctx: int, width: int, class_names: tuple[str, ...]) -> torch.Tensor:
    """The (n_ctx, width) context of a saved adapter, checked against the config and the backbone."""
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not isinstance(data.get("ctx"), torch.Tensor):
        raise ValueError(f"prompt context {path.name}: expected a dict with a 'ctx' tensor")
    ctx: torch.Tensor = data["ctx"]
    if tuple(ctx.shape) != (n_ctx, width):
        raise ValueError(
            f"prompt context {path.name} has shape {tuple(ctx.shape)}, but n_ctx={n_ctx} on this CLIP "
            f"text tower (width {width}) needs ({n_ctx}, {width})"
        )
    saved_names = tuple(data.get("class_names", class_names))
    if saved_names != tuple(class_names):
        raise ValueError(
            f"prompt context {path.name} was trained for classes {saved_names}, not {class_names}"
        )
    return ctx.float()


class ClipPromptDetector(TrainableDetector):
    """Fake probability = softmax over the CoOp prompts "<ctx> real." / "<ctx> fake."."""

    name = "clip_prompt"
    code_version = "1"
    adapter_field = "context"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self.looks_at = self.prompt_config.looks_at
        self.input_size = declared_image_size(self.prompt_config.backbone)
        self._backbone: ClipBackbone | None = None
        self._tokens: torch.Tensor | None = None  # (C, L) placeholder prompt ids
        self._embedded: torch.Tensor | None = None  # (C, L, width) their frozen token embeddings
        self._ctx: torch.nn.Parameter | None = None
        self._text_cache: torch.Tensor | None = None
        self._text_cache_key: tuple[int, int] | None = None
        self.text_encodings = 0  # how many times the text tower ran (the cache makes this 1 at inference)

    @property
    def prompt_config(self) -> ClipPromptConfig:
        if not isinstance(self.config, ClipPromptConfig):
            raise TypeError(f"clip_prompt needs a ClipPromptConfig, got {type(self.config).__name__}")
        return self.config

    @property
    def backbone(self) -> ClipBackbone:
        if self._backbone is None:
            raise RuntimeError("clip_prompt backbone not loaded")
        return self._backbone

    @property
    def text_width(self) -> int:
        return int(self.backbone.model.token_embedding.weight.shape[1])

    def weight_names(self) -> list[str]:
        return [self.prompt_config.backbone.weights, self.prompt_config.context]

    def _load_backbone(self) -> None:
        """Load the frozen CLIP and embed the placeholder prompts, once (idempotent)."""
        if self._backbone is not None:
            return
        import torch

        from worker.detectors.clip_backbone import load_clip

        config = self.prompt_config
        backbone = load_clip(config.backbone, self.store, self.device)
        check_image_size(self.name, backbone, self.input_size)
        check_text_tower(backbone.model)
        length = int(backbone.model.positional_embedding.shape[0])
        tokens = prompt_tokens(backbone.tokenizer, config.class_names, config.n_ctx, length).to(self.device)
        with torch.no_grad():
            self._embedded = backbone.model.token_embedding(tokens).detach()
        self._tokens = tokens
        self._backbone = backbone

    def _load(self) -> None:
        config = self.prompt_config
        path = self.store.resolve(config.context)  # raises ModelUnavailable
        self._load_backbone()
        self.set_context(read_context(path, config.n_ctx, self.text_width, config.class_names))
        logger.info("clip_prompt context %s loaded on %s", path.name, self.device)

    def set_context(self, ctx: torch.Tensor) -> None:
        """Replace the learned context (n_ctx, width) with a fresh trainable copy; drops cached features."""
        import torch

        self._ctx = torch.nn.Parameter(ctx.detach().clone().to(self.device, torch.float32))
        self._text_cache = None
        self._text_cache_key = None

    def _require_ctx(self) -> torch.nn.Parameter:
        if self._ctx is None:
            raise RuntimeError("clip_prompt context not loaded: call load() or load_for_training()")
        return self._ctx

    def encode_text(self) -> torch.Tensor:
        """(C, embed_dim) text features of the current prompts, differentiable in the context."""
        import torch

        ctx = self._require_ctx()
        if self._embedded is None or self._tokens is None:
            raise RuntimeError("clip_prompt backbone not loaded")
        classes = self._embedded.shape[0]
        n_ctx = ctx.shape[0]
        prefix, suffix = self._embedded[:, :1], self._embedded[:, 1 + n_ctx :]
        context = ctx.to(prefix.dtype).unsqueeze(0).expand(classes, -1, -1)
        prompts = torch.cat([prefix, context, suffix], dim=1)
        self.text_encodings += 1
        return encode_prompt_embeddings(self.backbone.model, prompts, self._tokens)

    def text_features(self) -> torch.Tensor:
        """L2-normalised (C, embed_dim) text features: cached at inference, recomputed while training."""
        import torch

        ctx = self._require_ctx()
        if torch.is_grad_enabled():  # a training step: needs the graph, and the context is about to change
            self._text_cache = None
            return torch.nn.functional.normalize(self.encode_text(), dim=-1)
        key = (id(ctx), ctx._version)  # in-place updates (optimizer steps) bump the version
        if self._text_cache is None or self._text_cache_key != key:
            self._text_cache = torch.nn.functional.normalize(self.encode_text(), dim=-1)
            self._text_cache_key = key
        return self._text_cache

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        return self.backbone.preprocess(batch)

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """logit(fake) - logit(real); differentiable in the context only (the image tower runs graph-free)."""
        import torch

        model = self.backbone.model
        with torch.no_grad():
            image = torch.nn.functional.normalize(model.encode_image(inputs), dim=-1)
        text = self.text_features()
        logits = model.logit_scale.exp() * image.to(text.dtype) @ text.T
        return logits[:, 1] - logits[:, 0]

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        return [self._require_ctx()]

    def init_adapter(self, seed: int) -> None:
        """A fresh context on the loaded backbone: ctx ~ N(0, 0.02), CoOp's random initialisation."""
        import torch

        self._load_backbone()  # no-op after load_for_training()
        generator = torch.Generator().manual_seed(seed)
        ctx = torch.randn(self.prompt_config.n_ctx, self.text_width, generator=generator) * CTX_INIT_STD
        self.set_context(ctx)

    def save_adapter(self, path: Path) -> None:
        import torch

        config = self.prompt_config
        ctx = self._require_ctx().detach().cpu().clone()
        torch.save({"ctx": ctx, "class_names": list(config.class_names), "n_ctx": config.n_ctx}, str(path))


DETECTOR = ClipPromptDetector
