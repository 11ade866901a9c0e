"""Function calling for the bundled local model, inside its llama.cpp server.

SmolLM2 was not trained on tools, and llama-cpp-python's own ``chatml-function-calling``
format refuses to stream an automatic tool choice (FastAgent always streams) and drops
tool results from the prompt. This chat handler teaches the model tools the way that
format does, with grammars: the tool catalogue goes into the system message, a grammar
makes the model's first words either ``message:`` or ``functions.NAME:``, and a grammar
built from the tool's JSON schema makes the arguments valid. Tool calls and their results
(errors included, such as an access role's refusal) are written back into the prompt, so
the model reads them on its next turn. A request without tools is answered by the model's
own chat template, exactly as before.

The server runs this module (``python -m aiorch.tasks.agents.local_model_tools`` with
llama.cpp's server arguments and ``--chat_format aiorch-tools``); it registers the handler
and then starts llama.cpp's server.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import llama_cpp
from llama_cpp import llama_chat_format, llama_grammar
from llama_cpp.llama_types import CreateCompletionResponse

TOOL_CHAT_FORMAT = "aiorch-tools"
MESSAGE_PREFIX = "message:"
CALL_PREFIX = "functions."
# Sampling fields of a chat request that a plain completion takes as they are.
_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)


def chat_with_tools(
    llama: llama_cpp.Llama,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
    stop: str | list[str] | None = None,
    **params: Any,
) -> Any:
    """A llama.cpp chat completion handler that offers ``tools`` to any chat model.

    ``tool_choice`` follows OpenAI: absent means ``auto`` when tools are offered,
    ``required`` forbids a plain message, ``{"function": {"name": N}}`` forces ``N``.
    """
    if not tools or tool_choice == "none":
        return _template_handler(llama)(
            llama=llama,
            messages=messages,
            stream=stream,
            max_tokens=max_tokens,
            stop=stop,
            **params,
        )
    sampling = {field: params[field] for field in _SAMPLING_FIELDS if params.get(field) is not None}
    # The formatter's typed messages are OpenAI's; plain role/content dicts are what it reads.
    prompt = _formatter(llama)(messages=cast(Any, _as_text(messages, tools)))
    stops = _stops(stop, prompt.stop)
    name = _choose(llama, prompt.prompt, tools, tool_choice, sampling)
    if name is not None:
        tool = next(tool for tool in tools if tool["function"]["name"] == name)
        arguments = _completed(
            llama,
            prompt=f"{prompt.prompt}{CALL_PREFIX}{name}:\n",
            grammar=_arguments_grammar(tool["function"].get("parameters")),
            stop=stops,
            max_tokens=max_tokens,
            **sampling,
        )
        text = arguments["choices"][0]["text"]
        # Only an automatic choice may turn into words; a required call stays a call.
        automatic = tool_choice in (None, "auto")
        if not automatic or not _repeats_last_call(messages, name, text):
            return _tool_call_reply(llama, name, text, arguments["usage"], stream)
    reply = llama.create_completion(
        prompt=f"{prompt.prompt}{MESSAGE_PREFIX}\n",
        stream=stream,
        stop=stops,
        max_tokens=max_tokens,
        **sampling,
    )
    return llama_chat_format._convert_completion_to_chat(reply, stream=stream)


def _completed(llama: llama_cpp.Llama, **request: Any) -> CreateCompletionResponse:
    """A completion generated whole (not streamed)."""
    return cast(CreateCompletionResponse, llama.create_completion(stream=False, **request))


def _tool_call_reply(
    llama: llama_cpp.Llama, name: str, arguments: str, usage: Any, stream: bool
) -> Any:
    call = {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    identity = f"chatcmpl-{uuid.uuid4().hex}"
    if not stream:
        return {
            "id": identity,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": llama.model_path,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                }
            ],
            "usage": usage,
        }
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": None}, None),
        ({"tool_calls": [{"index": 0, **call}]}, None),
        ({}, "tool_calls"),
    ]
    return (
        {
            "id": identity,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": llama.model_path,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        for delta, finish_reason in deltas
    )


def _choose(
    llama: llama_cpp.Llama,
    prompt: str,
    tools: list[dict[str, Any]],
    tool_choice: str | dict[str, Any] | None,
    sampling: dict[str, Any],
) -> str | None:
    """The tool the model calls next, or None for a plain message."""
    if isinstance(tool_choice, dict):
        return str(tool_choice["function"]["name"])
    choices = [f"{CALL_PREFIX}{tool['function']['name']}:" for tool in tools]
    if tool_choice != "required":
        choices.insert(0, MESSAGE_PREFIX)
    alternatives = " | ".join(json.dumps(choice) for choice in choices)
    decision = _completed(
        llama,
        prompt=prompt,
        grammar=llama_grammar.LlamaGrammar.from_string(f"root ::= {alternatives}\n", verbose=False),
        max_tokens=64,
        **sampling,
    )
    chosen = decision["choices"][0]["text"]
    if chosen == MESSAGE_PREFIX:
        return None
    return chosen.removeprefix(CALL_PREFIX).removesuffix(":")


def _repeats_last_call(messages: list[dict[str, Any]], name: str, arguments: str) -> bool:
    """Whether the call just chosen is one the model made last turn and has the result of.

    A small model tends to copy its own last turn: the same call again would only
    return the same result (or the same refusal), so the model answers instead.
    """
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    if last is None or not last.get("tool_calls") or messages[-1].get("role") != "tool":
        return False
    return any(
        call["function"]["name"] == name
        and _json_or_text(call["function"]["arguments"]) == _json_or_text(arguments)
        for call in last["tool_calls"]
    )


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _as_text(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as plain chat messages, tools and tool traffic spelled out."""
    catalogue = _catalogue(tools)
    text: list[dict[str, str]] = []
    called: dict[str, str] = {}
    if not messages or messages[0].get("role") != "system":
        text.append({"role": "system", "content": catalogue})
    for message in messages:
        role = message.get("role", "user")
        content = _content_text(message.get("content"))
        if role == "system":
            text.append({"role": "system", "content": f"{content}\n\n{catalogue}"})
        elif role == "assistant":
            parts = [f"{MESSAGE_PREFIX}\n{content}"] if content else []
            for tool_call in message.get("tool_calls") or []:
                function = tool_call["function"]
                called[tool_call.get("id", "")] = function["name"]
                parts.append(f"{CALL_PREFIX}{function['name']}:\n{function['arguments']}")
            text.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            name = called.get(message.get("tool_call_id", ""), "the function")
            text.append({"role": "tool", "content": f"{name} returned:\n{content}"})
        else:
            text.append({"role": role, "content": content})
    return text


def _catalogue(tools: list[dict[str, Any]]) -> str:
    lines = ["You can call these functions:"]
    for tool in tools:
        function = tool["function"]
        lines.append(
            f"{CALL_PREFIX}{function['name']}: {function.get('description') or ''}\n"
            f"  arguments (JSON schema): {json.dumps(function.get('parameters') or {})}"
        )
    lines.append(
        f"Reply with '{MESSAGE_PREFIX}' and your answer, or call a function with "
        f"'{CALL_PREFIX}<name>:' and its arguments as JSON on the next line."
    )
    return "\n".join(lines)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))


def _arguments_grammar(schema: dict[str, Any] | None) -> llama_grammar.LlamaGrammar:
    try:
        return llama_grammar.LlamaGrammar.from_json_schema(
            json.dumps(schema or {"type": "object"}), verbose=False
        )
    except (ValueError, NotImplementedError, KeyError):
        # A schema the converter cannot express still gets valid JSON.
        return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)


def _stops(requested: str | list[str] | None, template: str | list[str] | None) -> list[str]:
    stops: list[str] = []
    for value in (requested, template):
        if isinstance(value, str):
            stops.append(value)
        elif value:
            stops.extend(value)
    return stops


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="ignore")


def _formatter(llama: llama_cpp.Llama) -> llama_chat_format.Jinja2ChatFormatter:
    return llama_chat_format.Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=_token_text(llama, llama.token_eos()),
        bos_token=_token_text(llama, llama.token_bos()),
    )


def _template_handler(llama: llama_cpp.Llama) -> Any:
    """The handler llama.cpp would have used without ``--chat_format``."""
    guessed = llama_chat_format.guess_chat_format_from_gguf_metadata(llama.metadata)
    if guessed is not None:
        return llama_chat_format.get_chat_completion_handler(guessed)
    return llama._chat_handlers["chat_template.default"]


def main() -> None:
    """Register the handler, then run llama.cpp's server with this process's arguments."""
    from llama_cpp.server.__main__ import main as serve

    llama_chat_format.register_chat_completion_handler(TOOL_CHAT_FORMAT)(chat_with_tools)
    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
