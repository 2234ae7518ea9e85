"""Reading a language model's free-text answer as fake, real or unclear. Pure; no model code.

The answer is split into clauses (at punctuation and at but / however / although / though / whereas /
while / yet / instead / and). In each clause, whole words vote:

- fake words: fake, deepfake, generated ("computer generated", "AI-generated"), synthetic, synthesized,
  artificial, manipulated, altered, tampered, doctored, forged, photoshopped, fabricated, swapped,
  unnatural, unrealistic, cgi and their common forms;
- real words: real, natural, authentic, genuine, unaltered, unedited, unmanipulated, untampered, pristine.

A word after a negation in the same clause (not, n't, no, never, neither, nor, without, nothing, none, lack)
votes for the other side: "not a deepfake" and "no signs of manipulation" read as real, "not a natural
photo" as fake. "non" negates only the next word ("non-synthetic"). A clause that hedges ("not sure",
"cannot tell", "hard to say", "unclear", "uncertain", "unable to") casts no vote at all, so "I cannot tell
whether it is real or fake" is unclear. The answer is fake when only fake votes were cast, real when only
real ones, and unclear when both or neither ("real or fake?", "natural lighting, but a deepfake face").
Words are whole words: "realistic" and "reality" are not "real", "generation" is not "generated".
"""

from __future__ import annotations

import re
from typing import Literal

Answer = Literal["fake", "real", "unclear"]

FAKE_WORDS = frozenset(
    {"fake", "fakes", "faked", "deepfake", "deepfakes", "generated", "synthetic", "synthesized"}
    | {"synthesised", "artificial", "artificially", "manipulated", "manipulation", "manipulations"}
    | {"altered", "tampered", "doctored", "forged", "forgery", "photoshopped", "fabricated", "swapped"}
    | {"unnatural", "unrealistic", "cgi"}
)
REAL_WORDS = frozenset(
    {"real", "natural", "authentic", "genuine", "unaltered", "unedited", "unmanipulated", "untampered"}
    | {"pristine"}
)
NEGATORS = frozenset(
    {"not", "no", "never", "neither", "nor", "without", "nothing", "none", "lack", "lacks", "lacking"}
)
NEGATORS_FOR_NEXT_WORD = frozenset({"non"})

CLAUSE_BREAK = re.compile(
    r"[.!?;:,()\[\]\n\"“”]+|\b(?:but|however|although|though|whereas|while|yet|instead|and)\b"
)
HEDGE = re.compile(
    r"\b(?:not (?:sure|certain)|unsure|uncertain|unclear|unable to|undetermined|inconclusive"
    r"|can not (?:tell|say|determine|decide|be sure|be certain|confirm|conclude)"
    r"|(?:hard|difficult|impossible) to (?:tell|say|determine|decide|know|judge))\b"
)
WORD = re.compile(r"[a-z]+")


def normalize_answer(text: str) -> str:
    """Lowercase, contractions spelled out ("isn't" -> "is not"), hyphens and slashes as spaces."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"\bcan't\b|\bcannot\b", "can not", text)
    text = re.sub(r"\bwon't\b", "will not", text)
    text = re.sub(r"n't\b", " not", text)
    return re.sub(r"[-/_]", " ", text)


def clause_votes(clause: str) -> tuple[int, int]:
    """(fake votes, real votes) of one clause; a hedged clause casts none."""
    if HEDGE.search(clause):
        return 0, 0
    fake = real = 0
    negated = False
    negate_next = False
    for word in WORD.findall(clause):
        if word in NEGATORS:
            negated = True
            continue
        if word in NEGATORS_FOR_NEXT_WORD:
            negate_next = True
            continue
        flip = negated or negate_next
        negate_next = False
        if word in FAKE_WORDS:
            real, fake = (real + 1, fake) if flip else (real, fake + 1)
        elif word in REAL_WORDS:
            real, fake = (real, fake + 1) if flip else (real + 1, fake)
    return fake, real


def parse_answer(text: str) -> Answer:
    """'fake', 'real' or 'unclear' for a model's answer to "computer generated or natural photo?"."""
    fake = real = 0
    for clause in CLAUSE_BREAK.split(normalize_answer(text)):
        clause_fake, clause_real = clause_votes(clause)
        fake += clause_fake
        real += clause_real
    if fake and not real:
        return "fake"
    if real and not fake:
        return "real"
    return "unclear"
