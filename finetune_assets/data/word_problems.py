"""Arithmetic word problems with a numeric answer, generated deterministically: the data of the
shipped reward recipe (``recipes/word_sums.yaml``, its rows in ``recipes/word_sums.jsonl``).

Each problem adds or takes away small numbers of things a person has, in one phrasing ("Mia has 7
pencils and gets 5 more. How many pencils does Mia have now? Reply with the number only."); its
``answer`` is the result, checked by the ``exact_answer`` reward. The numbers are small (2 to 9 and
1 to 5) and the phrasing one, because GRPO learns only from groups whose samples differ in reward:
SmolLM2-135M-Instruct answers about a quarter of these right when sampling at temperature 0.7, where
the earlier mix of phrasings and larger numbers gave it a few per cent and groups mostly all wrong. Every prompt is distinct, so the splits hold distinct problems. The file is
what ``python -m finetune_assets.data.word_problems`` writes; a test checks the two agree.
"""

from __future__ import annotations

import json
import random
import sys

NAMES = ("Mia", "Tom", "Ana", "Leo", "Sara", "Ben", "Ivy", "Omar", "Lena", "Raj", "Zoe", "Max")
THINGS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "shells", "cards", "stamps")
GAIN, LOSS = "gets {b} more", "loses {b}"
ASK = "How many {things} does {who} have now? Reply with the number only."
SEED, COUNT = 25, 400


def problems(count: int = COUNT, seed: int = SEED) -> list[dict]:
    """``count`` distinct problems (``prompt``, ``answer``), the same for the same seed."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < count:
        who, things = rng.choice(NAMES), rng.choice(THINGS)
        a, b = rng.randint(2, 9), rng.randint(1, 5)  # small numbers: a 135M model gets some right
        gains = rng.random() < 0.5 or b >= a
        step = (GAIN if gains else LOSS).format(b=b)
        prompt = f"{who} has {a} {things} and {step}. {ASK.format(things=things, who=who)}"
        if prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "answer": a + b if gains else a - b})
    return rows


def main() -> None:
    """The rows as JSON lines on stdout."""
    sys.stdout.write("".join(json.dumps(row) + "\n" for row in problems()))


if __name__ == "__main__":
    main()
