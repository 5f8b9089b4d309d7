"""Agent-shaped payloads: each model call's input is the whole conversation so far."""

from __future__ import annotations

import random


def agent_turns(turns: int, seed: int = 0) -> list[dict[str, object]]:
    """A model-call input per turn of an agent loop: the whole conversation so far.

    Each turn adds a tool result (5-50 KB) and a reply (1-10 KB) of text that
    compresses like prose, after fixed instructions and tool schemas, so every
    input is the previous one plus a few KB.
    """
    rng = random.Random(seed)
    vocabulary = [f"{w}{i}" for i, w in enumerate(["alpha", "beta", "gamma", "delta"])]
    vocabulary += [f"word{i}" for i in range(2_000)]

    def text(size: int) -> str:
        out: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(vocabulary)
            out.append(word)
            length += len(word) + 1
        return " ".join(out)

    instructions = text(8_000)
    tools = [{"name": f"tool_{i}", "schema": text(800)} for i in range(15)]
    messages: list[dict[str, object]] = [{"role": "user", "content": text(500)}]
    inputs: list[dict[str, object]] = []
    for turn in range(turns):
        inputs.append({"instructions": instructions, "tools": tools, "input": list(messages)})
        messages.append({"role": "assistant", "content": text(rng.randint(1_000, 10_000))})
        if rng.random() < 0.6:
            messages.append(
                {"role": "tool", "call": f"call_{turn}", "output": text(rng.randint(5_000, 50_000))}
            )
    return inputs
