#!/usr/bin/env python3
"""Writes examples/tiny-task/: a small smart-home intent task of the project's own making, for the README's main
job. Requests are built from templates (160 distinct ones: 120 for training, 40 held out); the answer is the intent
label. Deterministic (fixed seed)."""
import json
import random
from pathlib import Path

INTENTS = {
    "lights_on": ["turn on the {room} lights", "switch the lights on in the {room}", "lights on in the {room} please",
                  "make the {room} bright"],
    "lights_off": ["turn off the {room} lights", "switch the lights off in the {room}", "lights off in the {room}",
                   "make the {room} dark"],
    "play_music": ["play some music in the {room}", "put on a song in the {room}", "start the music in the {room}",
                   "i want to hear music in the {room}"],
    "set_alarm": ["set an alarm for {time}", "wake me up at {time}", "alarm at {time} please",
                  "remind me at {time}"],
}
ROOMS = ["kitchen", "bedroom", "hall", "office", "garage", "bathroom", "attic", "cellar", "porch", "study"]
TIMES = ["five", "six", "seven", "eight", "nine", "ten", "eleven", "noon", "midnight", "dawn"]


def sample(rng):
    intent = rng.choice(sorted(INTENTS))
    text = rng.choice(INTENTS[intent]).format(room=rng.choice(ROOMS), time=rng.choice(TIMES))
    return f"Intent of: {text}", intent


def main():
    rng = random.Random(20261123)
    out = Path(__file__).resolve().parent.parent / "examples" / "tiny-task"
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    train, evals = [], []
    while len(evals) < 40:
        prompt, intent = sample(rng)
        if prompt in seen:
            continue
        seen.add(prompt)
        (evals if len(train) >= 120 else train).append((prompt, intent))
    with open(out / "train.jsonl", "w") as f:
        for prompt, intent in train:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": intent}]}) + "\n")
    with open(out / "eval.jsonl", "w") as f:
        for prompt, intent in evals:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt}], "answers": [intent]}) + "\n")


if __name__ == "__main__":
    main()
