"""The model-call inputs of an agent loop, made by the integrations' own converters.

Both integrations run an agent's model calls as activities whose input is the
whole conversation so far. This module builds that input turn by turn with the
integrations' real types and serializes it with their real payload converters
(the ones their Temporal plugins install), so the bytes are those a worker
would externalize; the model is scripted (no network): a reply of 1-10 KB per
turn and, on 60 % of turns, a tool call whose result is 5-50 KB.

* ``openai-agents``: temporalio-openai-agents' ``ActivityModelInput``
  (instructions, the input items so far, 15 function tools) through its
  ``OpenAIPayloadConverter``.
* ``pydantic-ai``: pydantic-ai's ``_RequestParams`` (every message so far, each
  request with its own copy of the instructions, 15 tool definitions) through
  its ``PydanticAIPayloadConverter``.

Needs ``pip install temporalio-openai-agents pydantic-ai-slim``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from temporalio.api.common.v1 import Payload

INTEGRATIONS = ("openai-agents", "pydantic-ai")
TOOLS = 15


class _Script:
    """The scripted model: deterministic text, replies and tool results."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = [f"{w}{i}" for i, w in enumerate(["data", "agent", "tool", "plan"] * 500)]

    def text(self, size: int) -> str:
        out: list[str] = []
        length = 0
        while length < size:
            word = self.rng.choice(self.words)
            out.append(word)
            length += len(word) + 1
        return " ".join(out)

    def schema(self, i: int) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                f"arg_{i}_{j}": {"type": "string", "description": self.text(90)} for j in range(6)
            },
            "required": [f"arg_{i}_0"],
            "additionalProperties": False,
        }

    def reply(self) -> str:
        return self.text(self.rng.randint(1_000, 10_000))

    def tool_result(self) -> str | None:
        return self.text(self.rng.randint(5_000, 50_000)) if self.rng.random() < 0.6 else None


def openai_agents_inputs(turns: int, seed: int = 0) -> list[Payload]:
    """``turns`` model-call inputs of an openai-agents loop, as its plugin converts them."""
    from agents import ModelSettings
    from temporalio.openai_agents._invoke_model_activity import (
        ActivityModelInput,
        FunctionToolInput,
        ModelTracingInput,
    )
    from temporalio.openai_agents._temporal_openai_agents import OpenAIPayloadConverter

    script = _Script(seed)
    converter = OpenAIPayloadConverter()
    instructions = script.text(8_000)
    tools = [
        FunctionToolInput(
            name=f"tool_{i}", description=script.text(200), params_json_schema=script.schema(i)
        )
        for i in range(TOOLS)
    ]
    items: list[Any] = [{"role": "user", "content": script.text(500)}]
    payloads: list[Payload] = []
    for turn in range(turns):
        model_input = ActivityModelInput(
            model_name="scripted",
            system_instructions=instructions,
            input=list(items),
            model_settings=ModelSettings(),
            tools=list(tools),
            output_schema=None,
            handoffs=[],
            tracing=ModelTracingInput.DISABLED,
            previous_response_id=None,
            conversation_id=None,
            prompt=None,
        )
        payloads.append(converter.to_payloads([model_input])[0])
        result = script.tool_result()
        if result is not None:
            call = f"call_{turn}"
            items.append({
                "type": "function_call", "call_id": call, "name": f"tool_{turn % TOOLS}",
                "arguments": json.dumps({f"arg_{turn % TOOLS}_0": script.text(80)}),
                "id": f"fc_{turn}", "status": "completed",
            })  # fmt: skip
            items.append({"type": "function_call_output", "call_id": call, "output": result})
        items.append({
            "type": "message", "role": "assistant", "id": f"msg_{turn}", "status": "completed",
            "content": [{"type": "output_text", "text": script.reply(), "annotations": []}],
        })  # fmt: skip
    return payloads


def pydantic_ai_inputs(turns: int, seed: int = 0) -> list[Payload]:
    """``turns`` model-request inputs of a pydantic-ai Temporal agent, as its plugin makes them."""
    from pydantic_ai.durable_exec.temporal._payload_converter import PydanticAIPayloadConverter
    from pydantic_ai.durable_exec.temporal._transports import _RequestParams
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.models import ModelRequestParameters
    from pydantic_ai.tools import ToolDefinition

    script = _Script(seed)
    converter = PydanticAIPayloadConverter()
    instructions = script.text(8_000)
    parameters = ModelRequestParameters(
        function_tools=[
            ToolDefinition(
                name=f"tool_{i}",
                description=script.text(200),
                parameters_json_schema=script.schema(i),
            )
            for i in range(TOOLS)
        ]
    )
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=script.text(500))], instructions=instructions)
    ]
    payloads: list[Payload] = []
    for turn in range(turns):
        params = _RequestParams(
            messages=list(messages),
            model_settings=None,
            model_request_parameters=parameters,
            serialized_run_context=None,
            model_id="scripted",
        )
        payloads.append(converter.to_payloads([params])[0])
        result = script.tool_result()
        parts: list[Any] = [TextPart(content=script.reply())]
        call = f"call_{turn}"
        if result is not None:
            parts.append(
                ToolCallPart(
                    tool_name=f"tool_{turn % TOOLS}", args={"q": script.text(80)}, tool_call_id=call
                )
            )
        messages.append(ModelResponse(parts=parts, model_name="scripted"))
        if result is not None:
            returned = ToolReturnPart(
                tool_name=f"tool_{turn % TOOLS}", content=result, tool_call_id=call
            )
            messages.append(ModelRequest(parts=[returned], instructions=instructions))
    return payloads


MAKERS: dict[str, Callable[[int], list[Payload]]] = {
    "openai-agents": openai_agents_inputs,
    "pydantic-ai": pydantic_ai_inputs,
}
