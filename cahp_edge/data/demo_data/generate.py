"""python -m cahp_edge.demo_data.generate  (rewrites sentiment_train.tsv and sentiment_dev.tsv)

The demo dataset shipped with cahp-edge: short English product / place / media reviews labelled
``negative`` or ``positive``. Every sentence is composed here (hand-written sentences plus seeded
templates); no third-party corpus is copied. Deterministic: the same seed writes the same files.
The dev file holds sentences that do not occur in the train file.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261130
N_TRAIN, N_DEV = 440, 120

SUBJECTS = [
    "the movie",
    "this film",
    "the sequel",
    "the restaurant",
    "this cafe",
    "the hotel",
    "our room",
    "the phone",
    "this laptop",
    "the headphones",
    "the app",
    "the update",
    "the book",
    "this novel",
    "the concert",
    "the album",
    "the service",
    "the staff",
    "the delivery",
    "the course",
    "the game",
    "this blender",
    "the museum tour",
    "the pizza",
    "the coffee",
    "the train ride",
    "the museum",
    "the camera",
    "the keyboard",
    "the play",
    "the podcast",
    "the gym",
    "the tent",
    "the recipe",
]

POS_ADJ = [
    "wonderful",
    "excellent",
    "delightful",
    "fantastic",
    "superb",
    "charming",
    "brilliant",
    "lovely",
    "impressive",
    "great",
    "reliable",
    "friendly",
    "enjoyable",
    "remarkable",
    "solid",
    "pleasant",
    "outstanding",
    "refreshing",
    "clever",
    "comfortable",
]
NEG_ADJ = [
    "terrible",
    "awful",
    "disappointing",
    "boring",
    "dreadful",
    "mediocre",
    "frustrating",
    "poor",
    "sloppy",
    "annoying",
    "unreliable",
    "rude",
    "tedious",
    "bland",
    "broken",
    "overpriced",
    "noisy",
    "dull",
    "clumsy",
    "miserable",
]
INTENS = ["", "", "really ", "truly ", "quite ", "absolutely ", "pretty ", "incredibly ", "rather "]

POS_CLAUSES = [
    "I would happily recommend it",
    "I will definitely come back",
    "it was worth every penny",
    "it made my week",
    "everyone in our group loved it",
    "I enjoyed every minute",
    "it exceeded my expectations",
    "I would buy it again",
    "it left me smiling",
    "my friends are already asking about it",
    "it works exactly as promised",
    "the price was more than fair",
]
NEG_CLAUSES = [
    "I want my money back",
    "I will not return",
    "it was a waste of time",
    "it ruined my evening",
    "nobody in our group liked it",
    "I regretted it within minutes",
    "it fell far short of my expectations",
    "I would never buy it again",
    "it left me annoyed",
    "I warned my friends to avoid it",
    "it stopped working after a day",
    "the price was a joke",
]

POS_TEMPLATES = [
    "{S} was {i}{a}.",
    "{S} is {i}{a}, and {c}.",
    "What a {a} experience: {c}.",
    "Honestly, {S} was {i}{a}.",
    "I found {S} {i}{a}; {c}.",
    "{S_cap} turned out {a}, {c}.",
    "Not bad at all: {S} was {a}.",
    "I expected little, but {S} was {i}{a}.",
    "{S_cap} was slow at first, but it became {a} and {c}.",
    "Five stars: {S} is {a}.",
    "I can't complain, {S} was {a}.",
    "{S_cap} never disappoints; {c}.",
]
NEG_TEMPLATES = [
    "{S} was {i}{a}.",
    "{S} is {i}{a}, and {c}.",
    "What a {a} experience: {c}.",
    "Honestly, {S} was {i}{a}.",
    "I found {S} {i}{a}; {c}.",
    "{S_cap} turned out {a}, {c}.",
    "Not good at all: {S} was {a}.",
    "I had high hopes, but {S} was {i}{a}.",
    "{S_cap} started well, but it became {a} and {c}.",
    "One star: {S} is {a}.",
    "I can't recommend it, {S} was {a}.",
    "{S_cap} never works; {c}.",
]

HANDWRITTEN = [
    ("positive", "The waiter remembered our names and the soup was perfect."),
    ("positive", "Battery life is amazing, I charge it twice a week."),
    ("positive", "A warm, funny story with a cast that clearly had fun."),
    ("positive", "Setup took two minutes and everything just worked."),
    ("positive", "The view from the balcony alone was worth the trip."),
    ("positive", "Crisp sound, deep bass and they stay on during a run."),
    ("positive", "I laughed out loud three times in the first chapter."),
    ("positive", "Fast shipping, careful packaging, and a handwritten thank-you note."),
    ("positive", "The teacher explained hard ideas in a way that finally made sense."),
    ("positive", "Best burger I have had in years, and the fries were hot."),
    ("positive", "It is light, quiet and the screen is gorgeous."),
    ("positive", "Our kids begged to go back the next weekend."),
    ("positive", "The new version fixed every bug that bothered me."),
    ("positive", "Cozy room, spotless bathroom, and a breakfast worth waking up for."),
    ("positive", "The ending gave me chills in the best way."),
    ("positive", "Support answered within an hour and solved my problem."),
    ("positive", "Simple ingredients, big flavour, ready in twenty minutes."),
    ("positive", "The band played for two hours and sounded better than the record."),
    ("positive", "Comfortable seats, on time, and the staff were kind."),
    ("positive", "A smart, gripping thriller that kept me guessing."),
    ("negative", "The soup was cold and the waiter ignored us for twenty minutes."),
    ("negative", "The battery dies before lunch, even with the screen dimmed."),
    ("negative", "A flat story with characters I stopped caring about."),
    ("negative", "Setup failed three times and the manual was useless."),
    ("negative", "The room smelled of smoke and the window would not close."),
    ("negative", "Tinny sound, and they fall out of my ears when I walk."),
    ("negative", "I gave up halfway through the second chapter."),
    ("negative", "The box arrived crushed and two parts were missing."),
    ("negative", "The lecturer read his slides aloud and answered no questions."),
    ("negative", "The burger was dry and the fries tasted of old oil."),
    ("negative", "It is heavy, loud and the screen flickers."),
    ("negative", "Our kids were bored after ten minutes."),
    ("negative", "The latest update deleted my saved settings."),
    ("negative", "Stained sheets, a broken shower, and breakfast was stale."),
    ("negative", "The ending made no sense and felt rushed."),
    ("negative", "Support never replied to any of my four emails."),
    ("negative", "The recipe left out a step and the cake collapsed."),
    ("negative", "The band showed up late and played for forty minutes."),
    ("negative", "Cramped seats, an hour late, and no announcement."),
    ("negative", "A predictable thriller with no tension at all."),
]


def _compose(rng: random.Random, label: str) -> str:
    pos = label == "positive"
    tpl = rng.choice(POS_TEMPLATES if pos else NEG_TEMPLATES)
    subject = rng.choice(SUBJECTS)
    adj = rng.choice(POS_ADJ if pos else NEG_ADJ)
    # "a {a}" before a vowel reads wrong; swap the article instead of skipping the template
    text = tpl.format(
        S=subject,
        S_cap=subject[0].upper() + subject[1:],
        i=rng.choice(INTENS),
        a=adj,
        c=rng.choice(POS_CLAUSES if pos else NEG_CLAUSES),
    )
    text = (
        text.replace("What a e", "What an e")
        .replace("What a a", "What an a")
        .replace("What a i", "What an i")
    )
    text = text.replace("What a o", "What an o").replace("What a u", "What an u")
    return text[0].upper() + text[1:]


def build(seed: int = SEED) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    rng = random.Random(seed)
    hand = HANDWRITTEN[:]
    rng.shuffle(hand)
    # a third of the hand-written sentences go to dev so it is not only templates
    dev_hand = [h for i, h in enumerate(hand) if i % 3 == 0]
    train_hand = [h for i, h in enumerate(hand) if i % 3 != 0]
    seen = {t for _, t in hand}

    def draw(n: int, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        rows = rows[:]
        while len(rows) < n:
            label = "positive" if len(rows) % 2 == 0 else "negative"
            text = _compose(rng, label)
            if text not in seen:
                seen.add(text)
                rows.append((label, text))
        rng.shuffle(rows)
        return rows

    return draw(N_TRAIN, train_hand), draw(N_DEV, dev_hand)


def write(folder: Path = HERE, seed: int = SEED) -> None:
    train, dev = build(seed)
    for name, rows in (("sentiment_train.tsv", train), ("sentiment_dev.tsv", dev)):
        lines = ["sentence\tlabel", *(f"{t}\t{lab}" for lab, t in rows)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
