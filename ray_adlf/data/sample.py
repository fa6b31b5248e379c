"""The bundled sample: scored conversations generated from templates, offline and deterministic.

Each conversation asks something with a checkable answer (a capital, a sum, a fact the user
stated earlier, a colour, a piece of advice) and gets a reply of one of five qualities. The
score is a function of that quality plus small noise, so it is learnable from the text:

    quality:  correct+polite 4.5-5 | correct+terse 3.5-4 | vague 2-3 | wrong 1-2 | rude/off-topic 0-1

About a third of the rows are two or three turns long, a quarter start with a system turn, and
about 60% carry a ``score_reason``. ``python -m ray_adlf.data.sample OUT.jsonl --rows N`` writes
any number of rows (the 100k-row validation benchmark uses it).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

CAPITALS = {
    "France": "Paris",
    "Spain": "Madrid",
    "Italy": "Rome",
    "Germany": "Berlin",
    "Japan": "Tokyo",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Greece": "Athens",
    "Chile": "Santiago",
}
COLOURS = {
    "the sky": "blue",
    "grass": "green",
    "snow": "white",
    "a banana": "yellow",
    "coal": "black",
    "a tomato": "red",
}
NAMES = ["Alice", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana"]
ADVICE = {
    "sleep better": "keep a regular bedtime, avoid screens late, and keep the room cool and dark",
    "learn a language": "practise a little every day, speak with others, and read simple books",
    "save money": "track your spending, set a monthly budget, and save a fixed share first",
    "stay focused": "work in short blocks, silence notifications, and take regular breaks",
}
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "Answer briefly and correctly.",
    "You are a friendly tutor.",
]
RUDE = [
    "I don't care about that.",
    "Ask someone else.",
    "Whatever, that is boring.",
    "Let me tell you about my favourite football team instead.",
]
QUALITY_SCORES = {
    "polite": (4.5, 5.0),
    "terse": (3.5, 4.0),
    "vague": (2.0, 3.0),
    "wrong": (1.0, 2.0),
    "rude": (0.0, 1.0),
}
REASONS = {
    "polite": ["Correct, complete and polite.", "Accurate answer with a friendly tone."],
    "terse": ["Correct but very short.", "Right answer, no explanation."],
    "vague": ["Does not really answer the question.", "Vague and unhelpful."],
    "wrong": ["The answer is factually wrong.", "Incorrect: contradicts the facts."],
    "rude": ["Rude and off-topic.", "Ignores the question."],
}


def _capital_turn(rng: random.Random, quality: str) -> tuple[str, str]:
    country = rng.choice(list(CAPITALS))
    right = CAPITALS[country]
    wrong = rng.choice([c for c in CAPITALS.values() if c != right])
    question = rng.choice(
        [f"What is the capital of {country}?", f"Which city is the capital of {country}?"]
    )
    answers = {
        "polite": f"The capital of {country} is {right}. It is also its largest city "
        f"in many guides. Happy to help!",
        "terse": f"{right}.",
        "vague": f"It is a city somewhere in {country}, I think.",
        "wrong": f"The capital of {country} is {wrong}.",
    }
    return question, answers.get(quality) or rng.choice(RUDE)


def _sum_turn(rng: random.Random, quality: str) -> tuple[str, str]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    off = rng.choice([-3, -2, -1, 1, 2, 5])
    question = rng.choice([f"What is {a} plus {b}?", f"Can you add {a} and {b}?"])
    answers = {
        "polite": f"Sure! {a} plus {b} equals {a + b}. Let me know if you need more sums.",
        "terse": f"{a + b}.",
        "vague": "That would be a number somewhere around fifty or so.",
        "wrong": f"{a} plus {b} equals {a + b + off}.",
    }
    return question, answers.get(quality) or rng.choice(RUDE)


def _colour_turn(rng: random.Random, quality: str) -> tuple[str, str]:
    thing = rng.choice(list(COLOURS))
    right = COLOURS[thing]
    wrong = rng.choice([c for c in COLOURS.values() if c != right])
    answers = {
        "polite": f"Usually {thing} is {right}. Good question!",
        "terse": f"{right.capitalize()}.",
        "vague": "Colours depend on the light, so it is hard to say.",
        "wrong": f"{thing.capitalize()} is {wrong}.",
    }
    return f"What colour is {thing}?", answers.get(quality) or rng.choice(RUDE)


def _advice_turn(rng: random.Random, quality: str) -> tuple[str, str]:
    goal = rng.choice(list(ADVICE))
    answers = {
        "polite": f"To {goal}, {ADVICE[goal]}. Small steps add up, good luck!",
        "terse": f"{ADVICE[goal].capitalize()}.",
        "vague": "Just try harder and it will probably work out.",
        "wrong": f"To {goal}, you should stop trying altogether.",
    }
    return f"How can I {goal}?", answers.get(quality) or rng.choice(RUDE)


def _name_turns(rng: random.Random, quality: str) -> list[tuple[str, str]]:
    name = rng.choice(NAMES)
    other = rng.choice([n for n in NAMES if n != name])
    greeting = (f"Hi, my name is {name}.", f"Nice to meet you, {name}! How can I help?")
    answers = {
        "polite": f"Your name is {name}, as you told me. Anything else, {name}?",
        "terse": f"{name}.",
        "vague": "You mentioned it earlier, I am not sure.",
        "wrong": f"Your name is {other}.",
    }
    return [greeting, ("What is my name?", answers.get(quality) or rng.choice(RUDE))]


TOPICS = (_capital_turn, _sum_turn, _colour_turn, _advice_turn)


def generate_record(rng: random.Random) -> dict:
    """One sample row in the input format; its score follows the final answer's quality."""
    quality = rng.choice(list(QUALITY_SCORES))
    turns: list[tuple[str, str]] = []
    if rng.random() < 0.15:
        turns = _name_turns(rng, quality)
    else:
        if rng.random() < 0.3:
            turns.append(rng.choice(TOPICS)(rng, rng.choice(["polite", "terse"])))
        turns.append(rng.choice(TOPICS)(rng, quality))
    conversation = []
    if rng.random() < 0.25:
        conversation.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    user_role, bot_role = rng.choice([("user", "assistant"), ("human", "gpt")])
    for question, answer in turns:
        conversation += [
            {"role": user_role, "content": question},
            {"role": bot_role, "content": answer},
        ]
    low, high = QUALITY_SCORES[quality]
    row = {"conversation": conversation, "meta_eval_score": round(rng.uniform(low, high) * 2) / 2}
    if rng.random() < 0.6:
        row["score_reason"] = rng.choice(REASONS[quality])
    return row


def generate_sample(rows: int, seed: int = 0) -> Iterator[dict]:
    """``rows`` sample records, the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(rows):
        yield generate_record(rng)


def write_sample(path: str | Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` generated records as JSONL to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in generate_sample(rows, seed):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def sample_path() -> Path:
    """The bundled 400-row sample shipped with the package."""
    return Path(__file__).resolve().parent.parent / "resources" / "sample.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description="Write generated scored conversations.")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_sample(args.out, args.rows, args.seed)


if __name__ == "__main__":
    main()
