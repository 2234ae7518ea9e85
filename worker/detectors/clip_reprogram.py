"""RepDFD: model reprogramming of a frozen CLIP for deepfake detection, on face crops.

Lin et al., "Standing on the Shoulders of Giants: Reprogramming Visual-Language Model for General Deepfake
Detection", AAAI 2025; reference code github.com/KQL11/RepDFD (Models/Programming.py, Models/Our_CLIP.py,
Models/CLIP_Wrapper.py, Main_Train.py). CLIP ViT-L/14 (OpenAI weights through open_clip: the reference's
'clip_large_openclip') stays frozen; only its input image and one prompt token are changed.

Image, as the reference (its dataset transform is open_clip's preprocess with Resize/CenterCrop replaced by
Resize([r, r]); InputPadding is built with normalization=None):

    face crop -> resize to r = int(S * shrink_ratio) (S = 224, ratio 0.7: r = 156; bilinear with PIL,
    which is what torchvision's Resize does on the reference's PIL images) -> [0, 1] -> CLIP mean/std
    normalisation -> zero padding to S x S, top/left (S - r + 1) // 2, bottom/right (S - r) // 2 ->
    + delta * mask, mask 0 on the face and 1 on the border

so normalisation comes first, the padding is zero in normalised space (the mean colour) and delta
(3 x S x S) is added in normalised space, with no clamp and no normalisation afterwards. The public
checkpoint's delta is exactly zero on rows and columns 34..189, i.e. r = 156. (When S - r is odd the
reference's mask starts one pixel before the pasted face; here the mask always covers the face exactly,
so delta never touches it. For the default ratio both are identical.)

Text, as Our_CLIP.encode_text: prompts "A real photo of a person" and "A fake photo of a FE person". The
token embedding of the placeholder "FE" is set to [proj(identity), 0, ...]: `proj` is a bias-free linear
map (weight embed_dim x identity_dim: 768 x 512 in the checkpoint) from the face's identity embedding to
CLIP's joint-embedding width, zero-padded to the token width (equal for ViT-L/14). Then, as CLIP does:
+ positional embedding -> causal text transformer -> ln_final -> the EOT token's feature -> text_projection.
The model does not normalise the identity embedding (the reference feeds stored TransFace features as they
are); `normalize_identity` optionally L2-normalises it first. Because the text transformer is causal, the
EOT feature depends only on the tokens up to EOT, so prompts are run truncated to their own length
(9 tokens, not 77): the same result at a fraction of the cost. The real prompt's feature is computed once
at load; the fake prompt's depends on the face and is computed per face, batched.

Score: logits = exp(logit_scale) * cos(image feature, [real, fake] text features); the reference takes
softmax(logits)[:, 1] as P(fake), so the fake log-odds are logit_fake - logit_real.

Adapter: RepDFD initialises delta to zeros and proj from N(0, (1 / embed_dim)^2), and keeps proj FROZEN:
only delta is optimised (its optimiser holds a single tensor; the checkpoint's proj has std 1/768, exactly
its initial distribution). `train_projection` (default off, as RepDFD) lets `dfw train` tune proj too.

Identity: the reference used TransFace features (512-d), which are not available here; `identity` picks
an ArcFace ONNX model (512-d, so the public checkpoint loads, but it is another embedding space: expect
some shift) or dlib's 128-d descriptor (needs an adapter trained with `dfw train`). See
worker.faces.identity for how crops without landmarks are aligned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from worker.detectors.base import TrainableDetector
from worker.detectors.clip_backbone import ClipBackbone, ClipBackboneConfig, load_clip
from worker.faces.identity import IdentityEncoder
from worker.models import ModelStore

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

REAL_PROMPT = "A real photo of a person"
FAKE_PROMPT = "A fake photo of a FE person"
PLACEHOLDER = "FE"  # the word whose token embedding carries the projected identity
REPDFD_VIT_L = "clip_large_openclip"  # the reference's name for open_clip ViT-L-14 with OpenAI weights
VIT_L_ARCHITECTURES = ("ViT-L-14", "ViT-L-14-quickgelu")
REFERENCE_IDENTITY = "transface"  # what RepDFD's published checkpoints were trained with


class ClipReprogramConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    checkpoint: str = Field(
        default="repdfd_ffpp_deepfakes.pth", description="RepDFD checkpoint: name or path"
    )
    identity: Literal["arcface", "dlib"] = "arcface"
    arcface_weights: str = Field(
        default="w600k_r50.onnx", description="insightface ArcFace ONNX: name or path"
    )
    shrink_ratio: float = Field(default=0.7, gt=0.1, le=1.0)
    normalize_identity: bool = Field(
        default=False, description="L2-normalise the identity embedding before the projection"
    )
    train_projection: bool = Field(
        default=False, description="let training tune the identity projection (RepDFD keeps it frozen)"
    )
    crop_margin: float = Field(
        default=1.3,
        ge=1.0,
        le=3.0,
        description="crop side / face box side of the crops (faces.crop_margin): where the identity "
        "encoder expects the face when it has no landmarks",
    )


@dataclass(frozen=True)
class CanvasGeometry:
    """Where the shrunk face sits on the square canvas."""

    size: int  # canvas side (the backbone's input size)
    inner: int  # side of the shrunk face

    @property
    def before(self) -> int:  # padding above and to the left
        return (self.size - self.inner + 1) // 2

    @property
    def after(self) -> int:  # padding below and to the right
        return (self.size - self.inner) // 2

    def face_slice(self) -> slice:
        return slice(self.before, self.before + self.inner)


def canvas_geometry(size: int, shrink_ratio: float) -> CanvasGeometry:
    inner = int(size * shrink_ratio)  # the reference: int(img_full_size * img_temp_ratio)
    if not 1 <= inner <= size:
        raise ValueError(f"shrink_ratio {shrink_ratio} leaves a {inner}-pixel face on a {size}-pixel canvas")
    return CanvasGeometry(size, inner)


@dataclass
class RepdfdAdapter:
    delta: torch.Tensor  # (3, S, S), CLIP-normalised pixel units
    projection: torch.Tensor  # (embed_dim, identity_dim), nn.Linear weight layout
    pretrained_model: str
    identity: str  # the identity encoder it was trained with; RepDFD's own checkpoints used TransFace
    shrink_ratio: float | None  # written by save_adapter; the reference's is 0.7


def read_repdfd_checkpoint(path: Path, image_size: int, embed_dim: int, identity_dim: int) -> RepdfdAdapter:
    """A RepDFD checkpoint's adapter, checked against the shapes a detector needs. Raises ValueError.

    The format is the reference's: {'pretrained_model': str, 'perturb_dict': {'delta': (3, S, S)},
    'face_random_proj_dict': {'weight': (embed_dim, identity_dim)}, ...}; it holds only tensors, strings and
    plain containers, so it loads with weights_only=True.
    """
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    try:
        delta = state["perturb_dict"]["delta"]
        projection = state["face_random_proj_dict"]["weight"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{path.name} is not a RepDFD checkpoint: expected perturb_dict['delta'] and "
            "face_random_proj_dict['weight']"
        ) from None
    expected = {
        "perturb_dict['delta']": (delta, (3, image_size, image_size), "3 x the backbone's input size"),
        "face_random_proj_dict['weight']": (
            projection,
            (embed_dim, identity_dim),
            f"CLIP embedding dim {embed_dim} x identity embedding dim {identity_dim}",
        ),
    }
    for key, (tensor, shape, meaning) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{path.name}: {key} has shape {tuple(tensor.shape)} but this detector needs {shape} "
                f"({meaning}); the checkpoint was made for another backbone or identity encoder"
            )
    ratio = state.get("shrink_ratio")
    return RepdfdAdapter(
        delta.float(),
        projection.float(),
        str(state.get("pretrained_model", "")),
        str(state.get("identity", REFERENCE_IDENTITY)),
        None if ratio is None else float(ratio),
    )


def encode_token_embeddings(model: Any, tokens: torch.Tensor, eot: int) -> torch.Tensor:
    """CLIP's text tower from token embeddings (N, L, W), L >= eot + 1 -> (N, D) unnormalised features."""
    import torch

    length = tokens.shape[1]
    x = tokens + model.positional_embedding[:length].to(tokens.dtype)
    mask = model.attn_mask
    x = model.transformer(x, attn_mask=None if mask is None else mask[:length, :length])
    x = model.ln_final(x)[:, eot]
    projection = model.text_projection
    if projection is None:
        return x
    if isinstance(projection, torch.nn.Linear):
        return projection(x)
    return x @ projection


@dataclass
class Prompts:
    real_feature: torch.Tensor  # (D,) normalised, fixed
    fake_tokens: torch.Tensor  # (1, L, W) token embeddings of the fake prompt up to EOT, slot zeroed
    slot: int  # position of the identity token
    eot: int  # position of the fake prompt's EOT token


def build_prompts(backbone: ClipBackbone) -> Prompts:
    """Tokenise both prompts; encode the real one once. The backbone is frozen, so no graph is kept."""
    import torch

    model = backbone.model
    pool = getattr(model, "text_pool_type", "argmax")
    if pool != "argmax" or not hasattr(model, "token_embedding"):
        raise ValueError(
            f"RepDFD needs an open_clip CLIP whose text tower pools the EOT token (argmax), got pool {pool!r}"
        )
    real_ids, fake_ids, placeholder = backbone.tokenizer([REAL_PROMPT, FAKE_PROMPT, PLACEHOLDER])
    slots = (fake_ids == placeholder[1]).nonzero().flatten().tolist()
    if len(slots) != 1 or int(placeholder.argmax()) != 2:  # [SOT, FE, EOT, 0, ...]
        raise ValueError(f"the tokenizer does not make {PLACEHOLDER!r} one token of {FAKE_PROMPT!r}")
    real_eot, fake_eot = int(real_ids.argmax()), int(fake_ids.argmax())
    with torch.no_grad():
        embed = model.token_embedding
        real_tokens = embed(real_ids[None, : real_eot + 1].to(backbone.device))
        real = encode_token_embeddings(model, real_tokens, real_eot)[0]
        fake_tokens = embed(fake_ids[None, : fake_eot + 1].to(backbone.device)).clone()
        fake_tokens[:, slots[0]] = 0.0
    return Prompts(torch.nn.functional.normalize(real, dim=-1), fake_tokens, slots[0], fake_eot)


def joint_dim(model: Any) -> int:
    """CLIP's joint image-text embedding width (the reference measures it on encode_image's output)."""
    projection = model.text_projection
    return int(projection.out_features if hasattr(projection, "out_features") else projection.shape[-1])


def repdfd_model_name(config: ClipBackboneConfig, image_size: int) -> str:
    if config.model in VIT_L_ARCHITECTURES and image_size == 224:
        return REPDFD_VIT_L
    return config.model


class ClipReprogramDetector(TrainableDetector):
    """RepDFD fake probability: softmax over CLIP similarities to a real and an identity-aware fake prompt.

    `identity_encoder` replaces the configured identity model (tests inject a deterministic stand-in).
    `preprocess` returns one row per face: the padded, normalised canvas (3 * S * S values) followed by the
    face's identity embedding, so that `fake_logits(preprocess(batch))` needs nothing else.
    """

    name = "clip_reprogram"
    looks_at = "face"
    input_size = 224
    code_version = "1"
    adapter_field = "checkpoint"

    def __init__(
        self,
        config: BaseModel,
        store: ModelStore,
        device: str = "cpu",
        identity_encoder: IdentityEncoder | None = None,
    ) -> None:
        super().__init__(config, store, device)
        self._injected_identity = identity_encoder
        self._identity = identity_encoder
        self._backbone: ClipBackbone | None = None
        self._prompts: Prompts | None = None
        self._mask: torch.Tensor | None = None
        self._delta: torch.nn.Parameter | None = None
        self._projection: torch.nn.Parameter | None = None
        self.geometry = CanvasGeometry(self.input_size, self.input_size)
        self.embed_dim = 0  # CLIP joint-embedding width: the projection's output
        self.token_width = 0  # CLIP token-embedding width: the projection's output is padded to it

    @property
    def reprogram_config(self) -> ClipReprogramConfig:
        if not isinstance(self.config, ClipReprogramConfig):
            raise TypeError(f"clip_reprogram needs a ClipReprogramConfig, got {type(self.config).__name__}")
        return self.config

    @property
    def backbone(self) -> ClipBackbone:
        if self._backbone is None:
            raise RuntimeError("clip_reprogram backbone not loaded")
        return self._backbone

    @property
    def identity(self) -> IdentityEncoder:
        if self._identity is None:
            raise RuntimeError("clip_reprogram identity encoder not loaded")
        return self._identity

    @property
    def prompts(self) -> Prompts:
        if self._prompts is None:
            raise RuntimeError("clip_reprogram prompts not built")
        return self._prompts

    @property
    def delta(self) -> torch.nn.Parameter:
        if self._delta is None:
            raise RuntimeError("clip_reprogram adapter not loaded")
        return self._delta

    @property
    def projection(self) -> torch.nn.Parameter:
        if self._projection is None:
            raise RuntimeError("clip_reprogram adapter not loaded")
        return self._projection

    @property
    def mask(self) -> torch.Tensor:
        if self._mask is None:
            raise RuntimeError("clip_reprogram backbone not loaded")
        return self._mask

    def weight_names(self) -> list[str]:
        config = self.reprogram_config
        if self._injected_identity is not None:
            identity = self._injected_identity.weight_names()
        else:
            identity = [config.arcface_weights] if config.identity == "arcface" else []
        return [config.backbone.weights, config.checkpoint, *identity]

    # ---- loading ----

    def _load(self) -> None:
        path = self.store.resolve(self.reprogram_config.checkpoint)  # raises ModelUnavailable, before CLIP
        self._load_backbone()
        adapter = read_repdfd_checkpoint(path, self.geometry.size, self.embed_dim, self.identity.dim)
        self._report_origin(path.name, adapter)
        self._set_adapter(adapter.delta, adapter.projection)
        logger.info("clip_reprogram adapter loaded from %s", path.name)

    def _report_origin(self, name: str, adapter: RepdfdAdapter) -> None:
        """Differences between how the adapter was trained and how it is used here (they shift scores)."""
        here: dict[str, object] = {
            "backbone": self._repdfd_name(),
            "identity": self.identity.name,
            "shrink_ratio": self.reprogram_config.shrink_ratio,
        }
        there: dict[str, object] = {"backbone": adapter.pretrained_model, "identity": adapter.identity}
        if adapter.shrink_ratio is not None:
            there["shrink_ratio"] = adapter.shrink_ratio
        for key, value in there.items():
            if value and value != here[key]:
                logger.warning(
                    "clip_reprogram: %s was trained with %s %s, used with %s", name, key, value, here[key]
                )

    def _load_backbone(self) -> None:
        import torch

        config = self.reprogram_config
        if self._identity is None:
            self._identity = self._load_identity()  # small, and fails fast when its weights are missing
        backbone = load_clip(config.backbone, self.store, self.device)
        model = backbone.model
        self.embed_dim = joint_dim(model)
        self.token_width = int(model.token_embedding.embedding_dim)
        if self.embed_dim > self.token_width:
            raise ValueError(
                f"CLIP embedding dim {self.embed_dim} is wider than its token embeddings ({self.token_width})"
            )
        self._backbone = backbone
        self._prompts = build_prompts(backbone)
        self.geometry = canvas_geometry(backbone.image_size, config.shrink_ratio)
        mask = torch.ones((1, backbone.image_size, backbone.image_size), device=self.device)
        face = self.geometry.face_slice()
        mask[:, face, face] = 0.0
        self._mask = mask

    def _load_identity(self) -> IdentityEncoder:
        from worker.faces.identity import load_arcface, load_dlib

        config = self.reprogram_config
        if config.identity == "dlib":
            return load_dlib(config.crop_margin)
        return load_arcface(self.store, config.arcface_weights, self.device, config.crop_margin)

    def _repdfd_name(self) -> str:
        return repdfd_model_name(self.reprogram_config.backbone, self.geometry.size)

    # ---- adapter ----

    def _set_adapter(self, delta: torch.Tensor, projection: torch.Tensor) -> None:
        import torch

        self._delta = torch.nn.Parameter(delta.detach().clone().to(self.device, torch.float32))
        trainable = self.reprogram_config.train_projection
        weight = projection.detach().clone().to(self.device, torch.float32)
        self._projection = torch.nn.Parameter(weight, requires_grad=trainable)

    def init_adapter(self, seed: int) -> None:
        """As RepDFD: delta = 0; proj ~ N(0, (1 / embed_dim)^2), drawn from a generator seeded with `seed`."""
        import torch

        size = self.geometry.size
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(self.embed_dim, self.identity.dim, generator=generator) / self.embed_dim
        self._set_adapter(torch.zeros(3, size, size), projection)

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        """delta, plus the projection when `train_projection` is set (RepDFD trains delta only)."""
        if self.reprogram_config.train_projection:
            return [self.delta, self.projection]
        return [self.delta]

    def save_adapter(self, path: Path) -> None:
        """The reference's checkpoint format (loads through `checkpoint`, and into RepDFD's own code)."""
        import torch

        state = {
            "pretrained_model": self._repdfd_name(),
            "perturb_dict": {"delta": self.delta.detach().cpu().clone()},
            "face_random_proj_dict": {"weight": self.projection.detach().cpu().clone()},
            "identity": self.identity.name,
            "shrink_ratio": self.reprogram_config.shrink_ratio,
        }
        torch.save(state, str(path))

    # ---- inference ----

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, 3 * C * C + identity_dim): padded normalised canvas, then identity."""
        import torch

        crops = np.asarray(batch, np.uint8)
        identity = self.identity.encode(crops)
        inner = self.geometry.inner
        shrunk = np.stack([resize_bilinear(crop, inner) for crop in crops])
        with torch.no_grad():
            normalised = self.backbone.preprocess(shrunk)
            pad = (self.geometry.before, self.geometry.after) * 2
            canvas = torch.nn.functional.pad(normalised, pad, value=0.0)
            embeddings = torch.from_numpy(np.asarray(identity, np.float32)).to(self.device)
            return torch.cat([canvas.flatten(1), embeddings.reshape(len(crops), -1)], dim=1)

    def unpack(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`preprocess` rows -> canvases (N, 3, C, C) and identity embeddings (N, identity_dim)."""
        size = self.geometry.size
        pixels = 3 * size * size
        if inputs.shape[1] != pixels + self.identity.dim:
            raise ValueError(f"expected rows of {pixels} + {self.identity.dim} values, got {inputs.shape[1]}")
        return inputs[:, :pixels].reshape(-1, 3, size, size), inputs[:, pixels:]

    def reprogram(self, canvas: torch.Tensor) -> torch.Tensor:
        """The canvas with the learned perturbation on its border (the face region is left as it is)."""
        return canvas + self.delta * self.mask

    def fake_text_features(self, identity: torch.Tensor) -> torch.Tensor:
        """(N, identity_dim) -> (N, D) normalised features of "A fake photo of a [ID] person"."""
        import torch

        functional = torch.nn.functional
        prompts = self.prompts
        if self.reprogram_config.normalize_identity:
            identity = functional.normalize(identity, dim=-1)
        token = functional.pad(identity @ self.projection.T, (0, self.token_width - self.embed_dim))
        template = prompts.fake_tokens.expand(len(identity), -1, -1)
        tokens = torch.cat([template[:, : prompts.slot], token[:, None], template[:, prompts.slot + 1 :]], 1)
        features = encode_token_embeddings(self.backbone.model, tokens, prompts.eot)
        return functional.normalize(features, dim=-1)

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """logit_fake - logit_real, logits = exp(logit_scale) * cosine similarity (N,)."""
        import torch

        model = self.backbone.model
        canvas, identity = self.unpack(inputs)
        image = torch.nn.functional.normalize(model.encode_image(self.reprogram(canvas)), dim=-1)
        fake = self.fake_text_features(identity)
        similarity_gap = (image * fake).sum(dim=-1) - image @ self.prompts.real_feature
        logits: torch.Tensor = model.logit_scale.exp() * similarity_gap
        return logits


def resize_bilinear(crop: np.ndarray, side: int) -> np.ndarray:
    """PIL bilinear (antialiased when shrinking): what torchvision's Resize does to the reference's images."""
    from PIL import Image

    if crop.shape[0] == side and crop.shape[1] == side:
        return crop
    image = Image.fromarray(np.ascontiguousarray(crop)).resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, np.uint8)


DETECTOR = ClipReprogramDetector
