"""AntifakePrompt: InstructBLIP asked "Is this photo real [*]?" with a learned soft pseudo-word `[*]`.

Chang, Chen, Chen, Hsu, Lin, "AntifakePrompt: Prompt-Tuned Vision-Language Models are Fake Image Detectors",
2023 (arXiv:2310.17419). Deepfake detection as visual question answering: the frozen InstructBLIP answers
"Yes" (real) or "No" (fake); only the word embedding of the pseudo-word is trained, textual-inversion style,
with the language-modelling loss on the answer.

Model. `config.model` is the local directory of a transformers InstructBLIP checkpoint
(`InstructBlipForConditionalGeneration.save_pretrained` + `InstructBlipProcessor.save_pretrained`: the
language model's tokenizer, `qformer_tokenizer/` and the image processor). It is loaded offline, no remote
code, in `config.dtype` (float32 unless set), frozen (`requires_grad_(False)`) and in eval mode (no dropout),
in training too.

Pseudo-word. `[*]` in `config.question` is replaced by `n_tokens` copies of the placeholder token `[*]`,
registered with the language model's tokenizer as an added special token (an existing vocabulary item of
that spelling is reused). The embedding matrix is never changed: placeholder positions are looked up as
token 0 and then overwritten with the learned vectors, a separate `nn.Parameter` of shape (n_tokens, width)
in the output space of the language model's input-embedding module. The Q-Former sees the question without
the pseudo-word ("Is this photo real?"): its BERT tokenizer would split `[*]` into punctuation. (The paper
also learns a Q-Former copy of the pseudo-word; here only the language-model side is learned, where the
answer is decided.)

Forward, as `InstructBlipForConditionalGeneration.forward` (transformers 5.x) does it: `get_image_features`
(vision tower -> Q-Former with the query tokens and the instruction -> `language_projection`) gives
`num_query_tokens` vectors that fill the `<image>` positions, which the processor puts before the text; here
they are concatenated in front of the text embeddings directly. The prompt is the same for every image, so
a batch needs no padding and the attention mask is all ones.

- Decoder-only language models (OPT, Vicuna/LLaMA): the answer token is predicted at the last prompt
  position (only that position's logits are computed when the model supports `logits_to_keep`).
- Encoder-decoder language models (Flan-T5): the prompt goes through the encoder and the answer token is
  the decoder's first prediction from `decoder_start_token_id`.

Score. Fake log-odds = log P(no) - log P(yes) from the first answer token's logits, where P(yes) sums the
probabilities of the single-token spellings "Yes" and "yes" and P(no) those of "No" and "no" (the model is
tuned towards the capitalised targets, but an untuned or lightly tuned InstructBLIP often answers in lower
case; both spellings are the same answer). `sigmoid` of it = P(no) / (P(yes) + P(no)). The words are
tokenized alone, without special tokens, as the answer is tokenized in training; a spelling that is not one
token is ignored, and "Yes" / "No" themselves must each be one token.

Training (`dfw train vqa_prompt`): cross-entropy over the whole vocabulary at the answer position with
target "Yes" for real and "No" for fake images, the paper's objective (its end-of-sequence token after the
answer is left out: the score reads the first token only). Classes are not reweighted (`pos_weight` is not
used). `init_adapter` starts every pseudo-word vector from the embedding of `config.init_word` ("real", the
mean over its tokens if it has several), as textual inversion does; with `init_word` unset the vectors are
drawn from N(0, 0.02) with the given seed.

Adapter file (`config.prompt`): `torch.save({"embedding": (n_tokens, width) float32, "placeholder": "[*]",
"question": ..., "answers": ["Yes", "No"]})`. Its question and token count must match the config.

Preprocessing. The pipeline already resized the crop to `input_size`, so only the image processor's rescale
and normalisation are applied (torch ops). AntifakePrompt normalises with its own mean/std
([0.4730, 0.4499, 0.4129] / [0.2780, 0.2713, 0.2872]); save the image processor the pseudo-word was trained
with next to the model. `input_size` is read before load from the directory's json
(`preprocessor_config.json`, or the image processor in `processor_config.json`, else the vision config's
`image_size`, else 224) and corrected at load from the processor itself.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from worker.detectors.base import TrainableDetector
from worker.detectors.hf_classifier import (
    Normalisation,
    normalisation_of,
    normalise_pixels,
    read_json,
    side_of_processor,
    square_side,
)
from worker.errors import ModelUnavailable
from worker.models import ModelStore

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DETECTOR_NAME = "vqa_prompt"
DEFAULT_INPUT_SIZE = 224
PSEUDO_WORD = "[*]"
DEFAULT_QUESTION = f"Is this photo real {PSEUDO_WORD}?"
YES_WORDS = ("Yes", "yes")  # the first is the training target for real images
NO_WORDS = ("No", "no")  # the first is the training target for fake images
INIT_STD = 0.02
LOOKUP_ID = 0  # the id looked up at placeholder positions before the learned vectors overwrite them
MODEL_FILE = "config.json"
UNSET_MESSAGE = (
    "set DFW_VQA_PROMPT__MODEL to the local directory of an InstructBLIP checkpoint "
    "(model and processor saved with save_pretrained)"
)


class VqaPromptConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory of an InstructBLIP checkpoint")
    prompt: str = Field(default="vqa_prompt_pseudoword.pt", description="learned pseudo-word: name or path")
    question: str = Field(
        default=DEFAULT_QUESTION, description=f"the question; {PSEUDO_WORD} marks where the pseudo-word goes"
    )
    n_tokens: int = Field(default=1, ge=1, le=16, description="learned vectors that make up the pseudo-word")
    init_word: str | None = Field(
        default="real", description="word whose embedding starts training; unset: N(0, 0.02)"
    )
    looks_at: Literal["face", "frame"] = "frame"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="weights' dtype (float16/bfloat16 for large models on GPU)"
    )

    @field_validator("question")
    @classmethod
    def one_pseudo_word(cls, question: str) -> str:
        if question.count(PSEUDO_WORD) != 1:
            raise ValueError(f"the question must contain {PSEUDO_WORD} exactly once: {question!r}")
        return question


def language_model_text(question: str, n_tokens: int) -> str:
    """The question as the language model reads it: `[*]` repeated once per learned vector."""
    return question.replace(PSEUDO_WORD, PSEUDO_WORD * n_tokens)


def qformer_text(question: str) -> str:
    """The question as the Q-Former reads it: without the pseudo-word."""
    return re.sub(r"\s*" + re.escape(PSEUDO_WORD), "", question).strip()


# --- the checkpoint directory, before load (json only) ------------------------------------------------


def input_size_of_checkpoint(directory: Path) -> int | None:
    """The image side from a checkpoint's json: the image processor's size, else the vision config's."""
    try:
        legacy = read_json(directory / "preprocessor_config.json")
        processor = read_json(directory / "processor_config.json") or {}
        image_processor = legacy if legacy is not None else processor.get("image_processor")
        if isinstance(image_processor, dict):
            side = side_of_processor(image_processor)
            if side is not None:
                return side
        vision = (read_json(directory / MODEL_FILE) or {}).get("vision_config")
        return square_side(vision.get("image_size")) if isinstance(vision, dict) else None
    except (ValueError, TypeError):
        return None


def checkpoint_directory(model: str | None) -> Path:
    """The configured checkpoint directory. Raises ModelUnavailable; reads nothing else."""
    if not model:
        raise ModelUnavailable(DETECTOR_NAME, UNSET_MESSAGE)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelUnavailable(model, f"no directory at {path} (DFW_VQA_PROMPT__MODEL)")
    if not (path / MODEL_FILE).is_file():
        raise ModelUnavailable(model, f"the directory {path} has no {MODEL_FILE}")
    return path


# --- tokens -------------------------------------------------------------------------------------------


def word_token_ids(tokenizer: Any, word: str) -> list[int]:
    """The ids of a word tokenized alone, without special tokens; empty if any piece is unknown."""
    ids = [int(token) for token in tokenizer(word, add_special_tokens=False)["input_ids"]]
    unknown = getattr(tokenizer, "unk_token_id", None)
    return [] if unknown is not None and unknown in ids else ids


def answer_token_ids(tokenizer: Any, words: tuple[str, ...]) -> tuple[int, ...]:
    """Ids of the one-token spellings of an answer; the first spelling (the training target) must be one."""
    ids: list[int] = []
    for word in words:
        tokens = word_token_ids(tokenizer, word)
        if len(tokens) != 1:
            if word == words[0]:
                raise ValueError(
                    f"the answer {word!r} is not one known token of the language model: {tokens}"
                )
            logger.info("vqa_prompt: answer spelling %r is not one known token; not counted", word)
            continue
        if tokens[0] not in ids:
            ids.append(tokens[0])
    return tuple(ids)


def placeholder_token_id(tokenizer: Any) -> int:
    """The id of `[*]` as an added special token of the tokenizer (added in memory if it is new)."""
    from transformers import AddedToken

    tokenizer.add_tokens([AddedToken(PSEUDO_WORD, special=True, normalized=False)], special_tokens=True)
    token_id = tokenizer.convert_tokens_to_ids(PSEUDO_WORD)
    if not isinstance(token_id, int):
        raise ValueError(f"the tokenizer did not register the placeholder {PSEUDO_WORD}")
    return token_id


@dataclass(frozen=True)
class PromptTokens:
    text_ids: list[int]  # the language model's prompt after the image positions, placeholders as LOOKUP_ID
    positions: list[int]  # where in text_ids the pseudo-word vectors go
    qformer_ids: list[int]
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]


def prompt_tokens(processor: Any, question: str, n_tokens: int, vocab_rows: int) -> PromptTokens:
    """Token ids of the prompt for the language model and the Q-Former, and of the answers. ValueError."""
    tokenizer = processor.tokenizer
    placeholder = placeholder_token_id(tokenizer)
    ids = [int(i) for i in tokenizer(language_model_text(question, n_tokens))["input_ids"]]
    positions = [index for index, token in enumerate(ids) if token == placeholder]
    if len(positions) != n_tokens:
        raise ValueError(
            f"the prompt has {len(positions)} placeholder tokens {PSEUDO_WORD}, expected {n_tokens}: {ids}"
        )
    text_ids = [LOOKUP_ID if index in positions else token for index, token in enumerate(ids)]
    yes_ids, no_ids = answer_token_ids(tokenizer, YES_WORDS), answer_token_ids(tokenizer, NO_WORDS)
    if set(yes_ids) & set(no_ids):
        raise ValueError(f"the answers share tokens: yes {yes_ids}, no {no_ids}")
    too_large = [t for t in [*text_ids, *yes_ids, *no_ids] if t >= vocab_rows]
    if too_large:
        raise ValueError(f"token ids {too_large} are outside the language model's {vocab_rows} embeddings")
    qformer_ids = [int(i) for i in processor.qformer_tokenizer(qformer_text(question))["input_ids"]]
    return PromptTokens(text_ids, positions, qformer_ids, yes_ids, no_ids)


# --- the adapter file -----------------------------------------------------------------------------------


def read_pseudo_word(path: Path, n_tokens: int, width: int, question: str) -> torch.Tensor:
    """The (n_tokens, width) vectors of a saved pseudo-word, checked against the config. ValueError."""
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not isinstance(data.get("embedding"), torch.Tensor):
        raise ValueError(f"pseudo-word {path.name}: expected a dict with an 'embedding' tensor")
    embedding: torch.Tensor = data["embedding"]
    if embedding.ndim == 1:
        embedding = embedding.unsqueeze(0)
    if tuple(embedding.shape) != (n_tokens, width):
        raise ValueError(
            f"pseudo-word {path.name} has shape {tuple(embedding.shape)}; this language model "
            f"(width {width}) with DFW_VQA_PROMPT__N_TOKENS={n_tokens} needs ({n_tokens}, {width})"
        )
    saved = data.get("question", question)
    if saved != question:
        raise ValueError(
            f"pseudo-word {path.name} was trained with the question {saved!r}, not {question!r} "
            "(DFW_VQA_PROMPT__QUESTION)"
        )
    if data.get("placeholder", PSEUDO_WORD) != PSEUDO_WORD:
        raise ValueError(
            f"pseudo-word {path.name} uses placeholder {data['placeholder']!r}, not {PSEUDO_WORD}"
        )
    return embedding.float()


# --- the detector ---------------------------------------------------------------------------------------


@dataclass
class Backbone:
    """The frozen InstructBLIP and everything derived from it once at load."""

    model: Any  # InstructBlipForConditionalGeneration
    processor: Any  # InstructBlipProcessor
    tokens: PromptTokens
    text_embeds: torch.Tensor  # (1, T, width) frozen embeddings of text_ids
    positions: torch.Tensor  # (n_tokens,) long
    qformer_ids: torch.Tensor  # (1, Tq) long
    yes_ids: torch.Tensor
    no_ids: torch.Tensor
    decoder_only: bool
    keep_last_logits: bool  # the causal LM takes `logits_to_keep`
    decoder_start: int | None  # encoder-decoder only


class VqaPromptDetector(TrainableDetector):
    """Fake probability = P("No") / (P("Yes") + P("No")) of InstructBLIP asked "Is this photo real [*]?"."""

    name = DETECTOR_NAME
    code_version = "1"
    adapter_field = "prompt"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self.looks_at = self.vqa_config.looks_at
        self.input_size = self._declared_input_size()
        self._backbone: Backbone | None = None
        self._pseudo: torch.nn.Parameter | None = None
        self._normalisation = Normalisation(None, None, None)
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None

    @property
    def vqa_config(self) -> VqaPromptConfig:
        if not isinstance(self.config, VqaPromptConfig):
            raise TypeError(f"vqa_prompt needs a VqaPromptConfig, got {type(self.config).__name__}")
        return self.config

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            raise RuntimeError("vqa_prompt backbone not loaded")
        return self._backbone

    @property
    def width(self) -> int:
        return int(self.backbone.text_embeds.shape[-1])

    def _declared_input_size(self) -> int:
        try:
            directory = checkpoint_directory(self.vqa_config.model)
        except ModelUnavailable:
            return DEFAULT_INPUT_SIZE
        return input_size_of_checkpoint(directory) or DEFAULT_INPUT_SIZE

    def weight_names(self) -> list[str]:
        """The checkpoint directory (hashed whole by the model store) and the pseudo-word file; nothing while
        the model is unset (the detector is then not configured, whatever the prompt file)."""
        model = self.vqa_config.model
        if not model:
            return []
        local = model if ModelStore.is_local_ref(model) else os.path.join(".", model)
        return [local, self.vqa_config.prompt]

    def _load_backbone(self) -> None:
        """Load the frozen InstructBLIP and tokenize the prompt, once (idempotent)."""
        if self._backbone is not None:
            return
        config = self.vqa_config
        directory = checkpoint_directory(config.model)
        ref = str(config.model)
        model, processor = load_instructblip(ref, directory, config.dtype)
        try:
            backbone = build_backbone(model, processor, config, self.device)
            image_processor = dict(processor.image_processor.to_dict())
            normalisation = normalisation_of(image_processor)
            side = side_of_processor(image_processor)
        except (ValueError, TypeError) as exc:
            raise ModelUnavailable(ref, str(exc)) from exc
        if side is not None and side != self.input_size:
            logger.warning(
                "vqa_prompt %s takes %spx inputs, not the %spx read before load", ref, side, self.input_size
            )
            self.input_size = side
        self._set_normalisation(normalisation)
        self._backbone = backbone
        kind = "decoder-only" if backbone.decoder_only else "encoder-decoder"
        logger.info("vqa_prompt loaded %s (%s) on %s: %spx", ref, kind, self.device, self.input_size)

    def _set_normalisation(self, normalisation: Normalisation) -> None:
        import torch

        self._normalisation = normalisation
        if normalisation.mean is not None and normalisation.std is not None:
            self._mean = torch.tensor(normalisation.mean, device=self.device).reshape(1, -1, 1, 1)
            self._std = torch.tensor(normalisation.std, device=self.device).reshape(1, -1, 1, 1)

    def _load(self) -> None:
        config = self.vqa_config
        checkpoint_directory(config.model)  # an unset or absent model is reported before the prompt
        path = self.store.resolve(config.prompt)  # raises ModelUnavailable
        self._load_backbone()
        try:
            embedding = read_pseudo_word(path, config.n_tokens, self.width, config.question)
        except ValueError as exc:
            raise ModelUnavailable(config.prompt, str(exc)) from exc
        self.set_embedding(embedding)
        logger.info("vqa_prompt pseudo-word %s loaded (%s vectors)", path.name, config.n_tokens)

    def set_embedding(self, embedding: torch.Tensor) -> None:
        """Replace the pseudo-word (n_tokens, width) with a fresh trainable float32 copy."""
        import torch

        expected = (self.vqa_config.n_tokens, self.width)
        if tuple(embedding.shape) != expected:
            raise ValueError(f"the pseudo-word must have shape {expected}, got {tuple(embedding.shape)}")
        self._pseudo = torch.nn.Parameter(embedding.detach().clone().to(self.device, torch.float32))

    def _require_pseudo(self) -> torch.nn.Parameter:
        if self._pseudo is None:
            raise RuntimeError("vqa_prompt pseudo-word not loaded: call load() or load_for_training()")
        return self._pseudo

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 RGB -> normalised (N, 3, S, S) float32 pixel values on the device."""
        return normalise_pixels(batch, self.device, self._normalisation.rescale, self._mean, self._std)

    def prompt_embeddings(self) -> torch.Tensor:
        """(1, T, width) embeddings of the prompt with the pseudo-word spliced in (differentiable in it)."""
        backbone = self.backbone
        pseudo = self._require_pseudo().to(backbone.text_embeds.dtype).unsqueeze(0)
        return backbone.text_embeds.index_copy(1, backbone.positions, pseudo)

    def answer_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, vocab) float32 logits of the first answer token for pixel values (N, 3, S, S)."""
        import torch

        backbone = self.backbone
        model = backbone.model
        count = inputs.shape[0]
        qformer_ids = backbone.qformer_ids.expand(count, -1)
        image = model.get_image_features(
            pixel_values=inputs.to(model.vision_model.dtype),
            qformer_input_ids=qformer_ids,
            qformer_attention_mask=torch.ones_like(qformer_ids),
            return_dict=True,
        ).pooler_output
        text = self.prompt_embeddings()
        embeds = torch.cat([image.to(text.dtype), text.expand(count, -1, -1)], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        language_model = model.language_model
        if backbone.decoder_only:
            extra = {"logits_to_keep": 1} if backbone.keep_last_logits else {}
            out = language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False, **extra)
            return out.logits[:, -1].float()
        start = torch.full(
            (count, 1), int(backbone.decoder_start or 0), dtype=torch.long, device=embeds.device
        )
        out = language_model(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=start, use_cache=False
        )
        return out.logits[:, 0].float()

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """log P(no) - log P(yes) at the first answer token, each summed over its spellings."""
        logits = self.answer_logits(inputs)
        backbone = self.backbone
        no = logits.index_select(1, backbone.no_ids).logsumexp(dim=1)
        yes = logits.index_select(1, backbone.yes_ids).logsumexp(dim=1)
        return no - yes

    def answer_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Token ids of the training answers: "No" (index 0 of no_ids) for fake, "Yes" for real."""
        import torch

        backbone = self.backbone
        return torch.where(labels > 0.5, backbone.no_ids[0], backbone.yes_ids[0]).long()

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The paper's language-modelling loss: cross-entropy over the vocabulary at the answer token."""
        import torch

        logits = self.answer_logits(inputs)
        loss: torch.Tensor = torch.nn.functional.cross_entropy(logits, self.answer_targets(labels))
        return loss

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        return [self._require_pseudo()]

    def init_adapter(self, seed: int) -> None:
        """Each vector = the embedding of `init_word` (mean over its tokens), or N(0, 0.02) without one."""
        import torch

        self._load_backbone()  # no-op after load_for_training()
        config = self.vqa_config
        word = config.init_word
        if not word:
            generator = torch.Generator().manual_seed(seed)
            self.set_embedding(torch.randn(config.n_tokens, self.width, generator=generator) * INIT_STD)
            return
        ids = word_token_ids(self.backbone.processor.tokenizer, word)
        if not ids:
            raise ValueError(f"init_word {word!r} is not made of known tokens of the language model")
        embed = self.backbone.model.language_model.get_input_embeddings()
        with torch.no_grad():
            vector = embed(torch.tensor(ids, device=self.device)).float().mean(dim=0)
        self.set_embedding(vector.unsqueeze(0).expand(config.n_tokens, -1).cpu())

    def save_adapter(self, path: Path) -> None:
        import torch

        config = self.vqa_config
        payload = {
            "embedding": self._require_pseudo().detach().cpu().clone(),
            "placeholder": PSEUDO_WORD,
            "question": config.question,
            "answers": [YES_WORDS[0], NO_WORDS[0]],
        }
        torch.save(payload, str(path))


def load_instructblip(ref: str, directory: Path, dtype: str) -> tuple[Any, Any]:
    """Model (frozen, eval) and processor from a local directory; no remote code. Raises ModelUnavailable."""
    import torch
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    try:
        model = InstructBlipForConditionalGeneration.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False, dtype=getattr(torch, dtype)
        )
        processor = InstructBlipProcessor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(
            ref, f"cannot load an InstructBLIP model and processor from {directory}: {exc}"
        ) from exc
    model.requires_grad_(False)
    return model.eval(), processor


def build_backbone(model: Any, processor: Any, config: VqaPromptConfig, device: str) -> Backbone:
    """Tokenize the prompt and answers, embed the prompt, move the model to the device. ValueError."""
    import torch

    language_model = model.language_model
    embed = language_model.get_input_embeddings()
    projection = int(model.language_projection.out_features)
    if int(embed.embedding_dim) != projection:
        raise ValueError(f"token embeddings ({embed.embedding_dim}) and image features ({projection}) differ")
    tokens = prompt_tokens(processor, config.question, config.n_tokens, int(embed.num_embeddings))
    decoder_only = bool(model.config.use_decoder_only_language_model)
    decoder_start = None if decoder_only else decoder_start_token(model)
    model.to(device)

    def ids(values: list[int] | tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(list(values), dtype=torch.long, device=device)

    with torch.no_grad():
        text_embeds = embed(ids(tokens.text_ids).unsqueeze(0)).detach()
    keep_last = "logits_to_keep" in inspect.signature(language_model.forward).parameters
    return Backbone(
        model=model,
        processor=processor,
        tokens=tokens,
        text_embeds=text_embeds,
        positions=ids(tokens.positions),
        qformer_ids=ids(tokens.qformer_ids).unsqueeze(0),
        yes_ids=ids(tokens.yes_ids),
        no_ids=ids(tokens.no_ids),
        decoder_only=decoder_only,
        keep_last_logits=decoder_only and keep_last,
        decoder_start=None if decoder_start is None else int(decoder_start),
    )


def decoder_start_token(model: Any) -> int:
    """The encoder-decoder language model's decoder start token: its config's, else a generation config's."""
    sources = (model.language_model.config, model.generation_config, model.language_model.generation_config)
    for source in sources:
        value = getattr(source, "decoder_start_token_id", None)
        if isinstance(value, int):
            return value
    raise ValueError("the encoder-decoder language model states no decoder_start_token_id")


DETECTOR = VqaPromptDetector
