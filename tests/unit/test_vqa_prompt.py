"""vqa_prompt (AntifakePrompt) on tiny randomly initialised InstructBLIP checkpoints written by the test.

The tokenizers are built locally from small word lists (no downloads); everything is saved with
`save_pretrained` so the detector loads it from a directory exactly as in production.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from worker.detectors import detector_class
from worker.detectors.vqa_prompt import (
    VqaPromptConfig,
    VqaPromptDetector,
    input_size_of_checkpoint,
    language_model_text,
    qformer_text,
)
from worker.errors import ModelUnavailable
from worker.models import ModelStore

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SIDE = 32
HEAD = 1.0  # std of the random output embeddings
SCALE = 1.0  # weights ~ N(0, SCALE^2 / fan_in)
QUERIES = 4
QUESTION = "Is this photo real [*]?"
LLM_QUESTION = "Is this photo real [*]?"  # what the language model reads with one pseudo-word vector
QFORMER_QUESTION = "Is this photo real?"  # what the Q-Former reads
WORDS = ["is", "this", "photo", "real", "yes", "no", "Yes", "No", "?", "Is", "fake", "a", "the"]
MEAN = [0.47, 0.45, 0.41]
STD = [0.28, 0.27, 0.29]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# --- tiny checkpoints -------------------------------------------------------------------------------------


def word_tokenizer(words: list[str], specials: list[str], template: str, added: list[str]) -> Any:
    """A word-level tokenizer (specials first, then words) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate([*specials, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1]))
    if all(word == word.lower() for word in words):
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    used = [token for token in specials if token in template.split()]
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(token, vocab[token]) for token in used]
    )
    if added:
        backend.add_special_tokens(added)
    names = ("pad_token", "unk_token", "bos_token", "eos_token")
    if specials[0] == "[PAD]":
        names = ("pad_token", "unk_token", "cls_token", "sep_token")
    return PreTrainedTokenizerFast(tokenizer_object=backend, **dict(zip(names, specials, strict=True)))


def language_tokenizer(with_placeholder: bool, seq2seq: bool) -> Any:
    """LLaMA/OPT-like (BOS first) or T5-like (EOS last) word tokenizer; `[*]` an added token if asked."""
    template = "$A </s>" if seq2seq else "<s> $A"
    added = ["[*]"] if with_placeholder else []
    return word_tokenizer(WORDS, ["<pad>", "<unk>", "<s>", "</s>"], template, added)


def qformer_tokenizer() -> Any:
    """BERT-like: lower case, [CLS] ... [SEP]."""
    words = ["is", "this", "photo", "real", "?"]
    return word_tokenizer(words, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], "[CLS] $A [SEP]", [])


def write_checkpoint(directory: Path, *, with_placeholder: bool = True, seq2seq: bool = False) -> None:
    """A tiny InstructBLIP (OPT or T5 language model) with its processor, saved with save_pretrained."""
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        OPTConfig,
        T5Config,
    )

    tokenizer = language_tokenizer(with_placeholder, seq2seq)
    image_processor = BlipImageProcessor(size={"height": SIDE, "width": SIDE}, image_mean=MEAN, image_std=STD)
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer(),
        num_query_tokens=QUERIES,
    )  # adds the <image> token to the tokenizer
    vocab = len(tokenizer)
    if seq2seq:
        t5_extra: dict[str, Any] = {"decoder_start_token_id": 0}  # not a declared T5Config field in 5.x
        text: Any = T5Config(
            vocab_size=vocab,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=3,
            dropout_rate=0.0,
            **t5_extra,
        )
    else:
        text = OPTConfig(
            vocab_size=vocab,
            hidden_size=32,
            word_embed_proj_dim=32,
            num_hidden_layers=1,
            ffn_dim=64,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=0,
        )
    config = InstructBlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": SIDE,
            "patch_size": 8,
            "initializer_range": 0.2,
        },
        qformer_config={
            "vocab_size": 9,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
        },
        text_config=text.to_dict(),
        num_query_tokens=QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config).eval()
    spread_answers(model)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def spread_answers(model: Any) -> None:
    """Larger random weights, so that the answer probabilities differ from image to image: the default init
    (zero query tokens, 1e-10 vision weights, 0.02 elsewhere) gives nearly the same logits for every image."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if tensor.ndim >= 2 and "embed" not in name and "shared" not in name:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * SCALE / tensor.shape[-1] ** 0.5)
        head = model.language_model.get_output_embeddings().weight
        head.copy_(torch.randn(head.shape, generator=generator) * HEAD)


def make_detector(model: str | None, tmp: Path, **fields: Any) -> VqaPromptDetector:
    store = ModelStore(tmp / "model-cache", allow_fetch=False)
    return VqaPromptDetector(VqaPromptConfig(model=model, **fields), store)


def training_detector(directory: Path, **fields: Any) -> VqaPromptDetector:
    detector = make_detector(str(directory), directory.parent, **fields)
    detector.load_for_training(seed=0)
    return detector


def placeholder_embedding(detector: VqaPromptDetector) -> Any:
    """The checkpoint's own embedding row of `[*]` (a vocabulary token of the test tokenizer)."""
    tokenizer = detector.backbone.processor.tokenizer
    row = tokenizer.convert_tokens_to_ids("[*]")
    return detector.backbone.model.language_model.get_input_embeddings().weight[row].detach().unsqueeze(0)


def reference_answer_logits(directory: Path, images: np.ndarray, seq2seq: bool = False) -> Any:
    """First-answer-token logits the transformers way: processor -> model forward, placeholder as a token."""
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    model = InstructBlipForConditionalGeneration.from_pretrained(directory, local_files_only=True).eval()
    processor: Any = InstructBlipProcessor.from_pretrained(directory, local_files_only=True)
    inputs = processor(images=list(images), text=[LLM_QUESTION] * len(images), return_tensors="pt")
    qformer = processor.qformer_tokenizer([QFORMER_QUESTION] * len(images), return_tensors="pt")
    inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = (
        qformer["input_ids"],
        qformer["attention_mask"],
    )
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == QUERIES * len(images)
    with torch.no_grad():
        if seq2seq:
            start = torch.zeros((len(images), 1), dtype=torch.long)
            return model(**inputs, decoder_input_ids=start).logits[:, 0]
        return model(**inputs).logits[:, -1]


def answer_ids(directory: Path) -> tuple[list[int], list[int]]:
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    yes = [int(tokenizer.convert_tokens_to_ids(word)) for word in ("Yes", "yes")]
    no = [int(tokenizer.convert_tokens_to_ids(word)) for word in ("No", "no")]
    return yes, no


def p_no(logits: Any, yes: list[int], no: list[int]) -> np.ndarray:
    probs = torch.softmax(logits.float(), dim=-1)
    p_yes, p_fake = probs[:, yes].sum(1), probs[:, no].sum(1)
    return (p_fake / (p_yes + p_fake)).numpy()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (6, 1, 1, 3))
    noise = rng.normal(0.0, 1.0, (6, SIDE, SIDE, 3)) * rng.uniform(10, 80, (6, 1, 1, 1))
    return np.clip(colours + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("vqa") / "tiny-instructblip-opt"
    write_checkpoint(directory)
    return directory


@pytest.fixture(scope="module")
def t5_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("vqa") / "tiny-instructblip-t5"
    write_checkpoint(directory, seq2seq=True)
    return directory


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> VqaPromptDetector:
    """The pseudo-word set to the checkpoint's own embedding of `[*]`: the same inputs as the reference."""
    detector = training_detector(checkpoint)
    detector.set_embedding(placeholder_embedding(detector))
    return detector


def reference_with_embedding(directory: Path, images: np.ndarray, vectors: Any, question: str) -> Any:
    """First-answer-token logits through the model's own forward, given `inputs_embeds` with `vectors` at the
    `[*]` positions (added to the tokenizer if it is not a token yet, looked up as token 0)."""
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    model = InstructBlipForConditionalGeneration.from_pretrained(directory, local_files_only=True).eval()
    processor: Any = InstructBlipProcessor.from_pretrained(directory, local_files_only=True)
    processor.tokenizer.add_tokens(["[*]"], special_tokens=True)
    inputs = processor(images=list(images), text=[question] * len(images), return_tensors="pt")
    qformer = processor.qformer_tokenizer([QFORMER_QUESTION] * len(images), return_tensors="pt")
    inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = (
        qformer["input_ids"],
        qformer["attention_mask"],
    )
    ids = inputs["input_ids"]
    placeholder = ids == processor.tokenizer.convert_tokens_to_ids("[*]")
    assert int(placeholder.sum()) == len(vectors) * len(images)
    ids = ids.masked_fill(placeholder, 0)
    embeds = model.get_input_embeddings()(ids).clone()
    embeds[placeholder] = vectors.detach().float().repeat(len(images), 1)
    with torch.no_grad():
        out = model(**{**inputs, "input_ids": ids}, inputs_embeds=embeds)
    return out.logits[:, -1]


# --- declarations -----------------------------------------------------------------------------------------


def test_registry_and_declarations(checkpoint: Path, tmp_path: Path) -> None:
    assert detector_class("vqa_prompt") is VqaPromptDetector
    detector = make_detector(str(checkpoint), tmp_path)
    assert (detector.name, detector.code_version, detector.looks_at) == ("vqa_prompt", "1", "frame")
    assert detector.adapter_field == "prompt" and detector.input_size == SIDE
    assert make_detector(str(checkpoint), tmp_path, looks_at="face").looks_at == "face"


def test_prompt_texts() -> None:
    assert language_model_text(QUESTION, 1) == LLM_QUESTION
    assert language_model_text(QUESTION, 3) == "Is this photo real [*][*][*]?"
    assert qformer_text(QUESTION) == QFORMER_QUESTION
    assert qformer_text("[*] Is this photo real?") == QFORMER_QUESTION
    with pytest.raises(ValueError, match="exactly once"):
        VqaPromptConfig(question="Is this photo real?")


def test_input_size_is_read_from_json_before_load(checkpoint: Path, tmp_path: Path) -> None:
    import json

    assert input_size_of_checkpoint(checkpoint) == SIDE  # transformers 5: processor_config.json
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"vision_config": {"image_size": 48}}))
    assert input_size_of_checkpoint(legacy) == 48
    assert make_detector(str(legacy), tmp_path).input_size == 48
    (legacy / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 40, "width": 40}}))
    assert input_size_of_checkpoint(legacy) == 40
    assert make_detector(None, tmp_path).input_size == 224
    assert make_detector(str(tmp_path / "absent"), tmp_path).input_size == 224


def test_constructing_imports_nothing_heavy(checkpoint: Path) -> None:
    code = (
        "import sys\n"
        "from worker.detectors.vqa_prompt import VqaPromptConfig, VqaPromptDetector\n"
        "from worker.models import ModelStore\n"
        f"config = VqaPromptConfig(model={str(checkpoint)!r})\n"
        f"store = ModelStore({str(checkpoint.parent / 'model-cache')!r}, allow_fetch=False)\n"
        "detector = VqaPromptDetector(config, store)\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(detector.input_size, len(detector.weight_names()), heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == f"{SIDE} 2 []"


# --- scores -----------------------------------------------------------------------------------------------


def test_predict_gives_one_probability_per_item(detector: VqaPromptDetector, images: np.ndarray) -> None:
    scores = detector.predict(list(images))
    assert scores.shape == (len(images),)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.max() - scores.min() > 0.1, f"the tiny model should spread the scores: {scores}"


def test_score_is_p_no_over_p_yes_plus_p_no(
    checkpoint: Path, detector: VqaPromptDetector, images: np.ndarray
) -> None:
    """Against the processor + the model's own forward, with `[*]` as the vocabulary token it is."""
    yes, no = answer_ids(checkpoint)
    expected = p_no(reference_answer_logits(checkpoint, images), yes, no)
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


def test_fake_logits_are_the_log_odds(
    checkpoint: Path, detector: VqaPromptDetector, images: np.ndarray
) -> None:
    yes, no = answer_ids(checkpoint)
    with torch.no_grad():
        logits = detector.answer_logits(detector.preprocess(images))
        fake = detector.fake_logits(detector.preprocess(images))
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = log_probs[:, no].logsumexp(1) - log_probs[:, yes].logsumexp(1)
    torch.testing.assert_close(fake, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(detector.predict(list(images)), torch.sigmoid(fake).numpy(), atol=1e-6)


def test_encoder_decoder_language_model(t5_checkpoint: Path, images: np.ndarray) -> None:
    """Flan-T5 style: the answer is the decoder's first token after decoder_start_token_id."""
    detector = training_detector(t5_checkpoint)
    assert not detector.backbone.decoder_only
    detector.set_embedding(placeholder_embedding(detector))
    yes, no = answer_ids(t5_checkpoint)
    expected = p_no(reference_answer_logits(t5_checkpoint, images, seq2seq=True), yes, no)
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


def test_batch_equals_singles(detector: VqaPromptDetector, images: np.ndarray) -> None:
    batch = detector.predict(list(images))
    singles = np.concatenate([detector.predict([image]) for image in images])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_preprocess_equals_the_image_processor(
    checkpoint: Path, detector: VqaPromptDetector, images: np.ndarray
) -> None:
    from transformers import InstructBlipProcessor

    processor = InstructBlipProcessor.from_pretrained(checkpoint, local_files_only=True)
    expected = processor(images=list(images), return_tensors="pt")["pixel_values"]
    actual = detector.preprocess(images)
    assert actual.shape == expected.shape == (len(images), 3, SIDE, SIDE)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_new_placeholder_token_leaves_the_vocabulary_alone(tmp_path: Path, images: np.ndarray) -> None:
    """A tokenizer without `[*]`: it is added in memory, its id has no embedding row, vectors are spliced."""
    directory = tmp_path / "no-placeholder"
    write_checkpoint(directory, with_placeholder=False)
    detector = training_detector(directory, n_tokens=2)
    rows = detector.backbone.model.language_model.get_input_embeddings().num_embeddings
    assert detector.backbone.processor.tokenizer.convert_tokens_to_ids("[*]") >= rows
    vectors = torch.randn(2, detector.width, generator=torch.Generator().manual_seed(5))
    detector.set_embedding(vectors)
    question = "Is this photo real [*][*]?"
    expected = p_no(reference_with_embedding(directory, images, vectors, question), *answer_ids(directory))
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


# --- training ---------------------------------------------------------------------------------------------


def snapshot(detector: VqaPromptDetector) -> dict[str, Any]:
    return {key: value.detach().clone() for key, value in detector.backbone.model.state_dict().items()}


def assert_unchanged(detector: VqaPromptDetector, before: dict[str, Any]) -> None:
    after = detector.backbone.model.state_dict()
    assert after.keys() == before.keys()
    changed = [key for key, value in before.items() if not torch.equal(value, after[key])]
    assert not changed, f"frozen tensors changed: {changed}"


def test_training_step_changes_only_the_pseudo_word(checkpoint: Path, images: np.ndarray) -> None:
    detector = training_detector(checkpoint)
    detector.set_embedding(placeholder_embedding(detector))
    before, pseudo = snapshot(detector), detector.adapter_parameters()[0].detach().clone()
    assert [tuple(p.shape) for p in detector.adapter_parameters()] == [(1, detector.width)]
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    loss = detector.training_loss(detector.preprocess(images), labels)

    yes, no = answer_ids(checkpoint)  # the LM loss: cross-entropy over the vocabulary, "Yes" real, "No" fake
    targets = torch.where(labels > 0.5, no[0], yes[0])
    expected = torch.nn.functional.cross_entropy(reference_answer_logits(checkpoint, images), targets)
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=0)

    optimiser = torch.optim.AdamW(detector.adapter_parameters(), lr=1e-2)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert not torch.equal(detector.adapter_parameters()[0].detach(), pseudo)
    assert_unchanged(detector, before)
    assert all(not p.requires_grad for p in detector.backbone.model.parameters())


def test_train_adapter_optimises_the_lm_loss(checkpoint: Path, images: np.ndarray) -> None:
    """`dfw train`'s loop on random crops, 2 steps: every loss is the cross-entropy at the answer token."""
    from worker.training import TrainingSet, train_adapter

    detector = training_detector(checkpoint, n_tokens=2)
    before = snapshot(detector)
    start = detector.adapter_parameters()[0].detach().clone()
    seen: list[Any] = []
    original = detector.training_loss

    def recording_loss(inputs: Any, labels: Any) -> Any:
        seen.append(
            (inputs.detach().clone(), labels.clone(), detector.adapter_parameters()[0].detach().clone())
        )
        loss = original(inputs, labels)
        seen[-1] = (*seen[-1][:3], loss.detach().clone())
        return loss

    detector.training_loss = recording_loss  # type: ignore[method-assign]
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (4, SIDE, SIDE, 3), dtype=np.uint8)
    data = TrainingSet(crops, np.asarray([0, 1, 0, 1], np.float32), 4, [])
    report = train_adapter(detector, data, epochs=1, lr=1e-2, batch_size=2, seed=0)
    assert report.steps == 2 and len(seen) == 2
    assert report.final_loss == pytest.approx(float(seen[-1][3]))
    assert not torch.equal(detector.adapter_parameters()[0].detach(), start)
    assert_unchanged(detector, before)

    yes, no = answer_ids(checkpoint)
    question = "Is this photo real [*][*]?"
    for inputs, labels, vectors, loss in seen:
        targets = torch.where(labels > 0.5, no[0], yes[0])
        logits = reference_from_pixels(checkpoint, inputs, vectors, question)
        expected = torch.nn.functional.cross_entropy(logits, targets)
        torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)


def reference_from_pixels(directory: Path, pixels: Any, vectors: Any, question: str) -> Any:
    """reference_with_embedding for already preprocessed pixel values."""
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    model = InstructBlipForConditionalGeneration.from_pretrained(directory, local_files_only=True).eval()
    processor: Any = InstructBlipProcessor.from_pretrained(directory, local_files_only=True)
    count = len(pixels)
    text = processor(text=[question] * count, return_tensors="pt")
    image_tokens = torch.full((count, QUERIES), model.config.image_token_id)
    ids = torch.cat([image_tokens, text["input_ids"]], dim=1)
    placeholder = ids == processor.tokenizer.convert_tokens_to_ids("[*]")
    embeds = model.get_input_embeddings()(ids).clone()
    embeds[placeholder] = vectors.float().repeat(count, 1)
    qformer = processor.qformer_tokenizer([QFORMER_QUESTION] * count, return_tensors="pt")
    with torch.no_grad():
        out = model(
            pixel_values=pixels,
            qformer_input_ids=qformer["input_ids"],
            qformer_attention_mask=qformer["attention_mask"],
            input_ids=ids,
            inputs_embeds=embeds,
        )
    return out.logits[:, -1]


def test_init_adapter(checkpoint: Path) -> None:
    detector = training_detector(checkpoint, n_tokens=2)  # init_word "real"
    embed = detector.backbone.model.language_model.get_input_embeddings()
    real = embed.weight[detector.backbone.processor.tokenizer.convert_tokens_to_ids("real")].detach()
    torch.testing.assert_close(detector.adapter_parameters()[0].detach(), real.expand(2, -1))
    random = training_detector(checkpoint, init_word=None)
    again = make_detector(str(checkpoint), checkpoint.parent, init_word=None)
    again.load_for_training(seed=0)
    vectors = random.adapter_parameters()[0].detach()
    assert torch.equal(vectors, again.adapter_parameters()[0].detach())
    assert 0.005 < float(vectors.std()) < 0.05
    with pytest.raises(ValueError, match="init_word"):
        training_detector(checkpoint, init_word="zebra")


# --- the adapter file -------------------------------------------------------------------------------------


def test_save_load_round_trip(checkpoint: Path, images: np.ndarray, tmp_path: Path) -> None:
    trained = training_detector(checkpoint)
    trained.set_embedding(torch.randn(1, trained.width, generator=torch.Generator().manual_seed(2)))
    path = tmp_path / "pseudo.pt"
    trained.save_adapter(path)
    saved = torch.load(path, weights_only=True)
    assert saved["placeholder"] == "[*]" and saved["question"] == QUESTION
    assert tuple(saved["embedding"].shape) == (1, trained.width)
    loaded = make_detector(str(checkpoint), tmp_path, prompt=str(path))
    loaded.load()
    np.testing.assert_allclose(loaded.predict(list(images)), trained.predict(list(images)), atol=1e-7)
    lineage = loaded.lineage()
    assert list(lineage.weights) == [str(checkpoint), str(path)]
    assert lineage.version.startswith("vqa_prompt/1@")


def test_prompt_file_must_match_the_config(checkpoint: Path, tmp_path: Path) -> None:
    trained = training_detector(checkpoint)
    path = tmp_path / "pseudo.pt"
    trained.save_adapter(path)
    with pytest.raises(ModelUnavailable, match="N_TOKENS=2"):
        make_detector(str(checkpoint), tmp_path, prompt=str(path), n_tokens=2).load()
    with pytest.raises(ModelUnavailable, match="trained with the question"):
        make_detector(str(checkpoint), tmp_path, prompt=str(path), question="Is this photo [*]?").load()


# --- unavailable ------------------------------------------------------------------------------------------


def test_unset_model_is_unavailable(tmp_path: Path) -> None:
    detector = make_detector(None, tmp_path)
    assert detector.weight_names() == []
    with pytest.raises(ModelUnavailable, match="DFW_VQA_PROMPT__MODEL") as refused:
        detector.load()
    assert refused.value.name == "vqa_prompt"
    with pytest.raises(ModelUnavailable, match="DFW_VQA_PROMPT__MODEL"):
        detector.load_for_training(seed=0)
    assert not detector.loaded


def test_missing_model_directory_is_unavailable(tmp_path: Path) -> None:
    absent = tmp_path / "absent" / "instructblip"
    detector = make_detector(str(absent), tmp_path)
    assert detector.weight_names() == [str(absent), "vqa_prompt_pseudoword.pt"]
    with pytest.raises(ModelUnavailable, match="no directory"):
        detector.load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match=re.escape("no config.json")):
        make_detector(str(tmp_path / "empty"), tmp_path).load()


def test_missing_prompt_file_is_unavailable(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=re.escape("vqa_prompt_pseudoword.pt")):
        make_detector(str(checkpoint), tmp_path).load()
    with pytest.raises(ModelUnavailable, match="no file or directory"):
        make_detector(str(checkpoint), tmp_path, prompt=str(tmp_path / "absent.pt")).load()
