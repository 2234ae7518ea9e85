"""The `lvlm_local` explainer: any transformers image-text-to-text model from a local directory.

`AutoProcessor` + `AutoModelForImageTextToText` (LLaVA, LLaVA-NeXT, Qwen2-VL, InstructBLIP, ... families),
loaded once in `load()` from `config.model`, offline (`local_files_only`), never trusting remote code.

Decisions:

- Images. The `max_images` most suspicious evidence items (default 1: LLaVA-1.5 and most open LVLMs were
  trained on one image per prompt, so one gets the single most suspicious crop or frame). Query-token
  models (BLIP-2, InstructBLIP) always get exactly one. No evidence image: the model is not called and
  the explanation says so.
- Prompt. The score summary of `worker.explain.prompts` followed by `SEED_QUESTION`. With a chat template
  (the processor's), one user turn holding the image placeholders then the text, plus the generation
  prompt. Without one: LLaVA-style processors (a `str` image token to expand) get
  "USER: <image>...\\n{question}\\nASSISTANT:", query-token models the bare question.
- Generation. Greedy (`do_sample=False`, one beam: temperature 0), `max_new_tokens`; only the new tokens
  are decoded (the prompt is cut off when the model echoes it), special tokens skipped, stripped.
- Lineage. `model` is the configured directory; `revision` the configured commit, else the sha256 of the
  directory's files (model store `hash_tree`, computed once at load).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from worker.aggregate import Verdict
from worker.devices import choose_device
from worker.explain.answers import parse_answer
from worker.explain.base import Evidence, Explainer, Explanation, agreement
from worker.explain.errors import ExplainerUnavailable
from worker.explain.lvlm_local import LvlmLocalConfig
from worker.explain.prompts import NO_EVIDENCE_TEXT, build_question, evidence_image, images_to_show
from worker.media import MediaInfo
from worker.models import hash_tree

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

EXPLAINER_NAME = "lvlm_local"
# processors that insert their own query tokens and whose models take exactly one image
QUERY_TOKEN_MODEL_TYPES = frozenset({"blip-2", "instructblip", "instructblipvideo"})
UNSET_MESSAGE = "set DFW_EXPLAIN__LVLM_LOCAL__MODEL to a local model directory"


class LocalLvlmExplainer(Explainer):
    name: ClassVar[str] = EXPLAINER_NAME
    needs_images: ClassVar[bool] = True  # shown the evidence crops or frames

    def __init__(self, config: LvlmLocalConfig) -> None:
        super().__init__(config)
        self.config: LvlmLocalConfig = config
        self.device = "cpu"
        self.revision: str | None = None
        self.model_type = ""
        self._model: Any = None
        self._processor: Any = None

    # --- loading ----------------------------------------------------------------------------------------

    def model_directory(self) -> Path:
        if not self.config.model:
            raise ExplainerUnavailable(EXPLAINER_NAME, UNSET_MESSAGE, transient=False)
        directory = Path(self.config.model).expanduser()
        if not (directory / "config.json").is_file():
            raise ExplainerUnavailable(
                EXPLAINER_NAME, f"{directory} is not a model directory (no config.json)", transient=False
            )
        return directory

    def load(self) -> None:
        if self._model is not None:
            return
        directory = self.model_directory()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = choose_device(self.config.device)
        dtype = self.torch_dtype(device)
        try:
            processor = AutoProcessor.from_pretrained(
                directory, local_files_only=True, trust_remote_code=False
            )
            model = AutoModelForImageTextToText.from_pretrained(
                directory, local_files_only=True, trust_remote_code=False, dtype=dtype
            )
        except (OSError, ValueError, KeyError) as error:
            raise ExplainerUnavailable(
                EXPLAINER_NAME, f"cannot load {directory}: {error}", transient=False
            ) from error
        model = model.eval().to(device)
        self.revision = self.config.revision or hash_tree(directory)
        self.model_type = str(getattr(model.config, "model_type", ""))
        self.device = device
        self._processor, self._model = processor, model
        logger.info(
            "lvlm_local loaded %s (%s, revision %s) on %s", directory, self.model_type, self.revision, device
        )

    def torch_dtype(self, device: str) -> torch.dtype:
        import torch

        name = self.config.dtype
        if name == "auto":
            name = "float16" if device.startswith("cuda") else "float32"
        dtype: torch.dtype = getattr(torch, name)
        return dtype

    # --- explaining -------------------------------------------------------------------------------------

    @property
    def image_limit(self) -> int:
        return 1 if self.model_type in QUERY_TOKEN_MODEL_TYPES else self.config.max_images

    def explain(self, media: MediaInfo, verdict: Verdict, evidence: list[Evidence]) -> Explanation:
        self.load()
        shown = images_to_show(evidence, self.image_limit)
        if not shown:
            return Explanation(
                explainer=self.name, text=NO_EVIDENCE_TEXT, model=self.config.model, revision=self.revision
            )
        prompt = self.render_prompt(build_question(media, verdict, shown), len(shown))
        started = time.perf_counter()
        text = self.generate(prompt, [evidence_image(item) for item in shown])
        latency = time.perf_counter() - started
        answer = parse_answer(text)
        return Explanation(
            explainer=self.name,
            text=text,
            model=self.config.model,
            revision=self.revision,
            prompt=prompt,
            answer=answer,
            agrees=agreement(answer, verdict),
            latency_s=latency,
        )

    def render_prompt(self, question: str, images: int) -> str:
        processor = self._processor
        if getattr(processor, "chat_template", None):
            content: list[dict[str, str]] = [{"type": "image"} for _ in range(images)]
            content.append({"type": "text", "text": question})
            messages = [{"role": "user", "content": content}]
            rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return str(rendered)
        image_token = getattr(processor, "image_token", None)
        if self.model_type not in QUERY_TOKEN_MODEL_TYPES and isinstance(image_token, str):
            return f"USER: {image_token * images}\n{question}\nASSISTANT:"
        return question

    def generate(self, prompt: str, images: list[Any]) -> str:
        import torch

        processor, model = self._processor, self._model
        inputs = processor(images=images, text=prompt, return_tensors="pt")
        inputs = inputs.to(self.device, model.dtype)
        with torch.inference_mode():
            output = model.generate(
                **inputs, do_sample=False, num_beams=1, max_new_tokens=self.config.max_new_tokens
            )
        new_tokens = strip_prompt(output, inputs["input_ids"])
        decoded = processor.batch_decode(new_tokens, skip_special_tokens=True)
        return str(decoded[0]).strip()


def strip_prompt(output: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The generated tokens only: decoder-only models return the prompt first, encoder-decoders do not."""
    length = input_ids.shape[1]
    if output.shape[1] >= length and bool((output[:, :length] == input_ids.to(output.device)).all()):
        return output[:, length:]
    return output


EXPLAINER = LocalLvlmExplainer
