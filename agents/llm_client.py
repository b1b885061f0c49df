"""The chat client the LLM core talks through: `ChatOpenAI`, with two things it leaves out.

- Tool results go out with the tool's ``name`` (``{"role": "tool", "tool_call_id": ..., "name": ...}``):
  langchain-openai drops it, and some models and proxies match results to calls by it.
- Every reply's token usage is kept, including replies the client cannot turn into a message
  (tool-call arguments that are JSON but not an object): langchain raises on those before the
  usage reaches the caller. A reply without usage (some servers send it only at the end, or not
  at all) is counted by an estimate from the characters sent and received, marked as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from langchain_core.messages import ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

CHARS_PER_TOKEN = 4  # a coarse estimate for English text and code; marked as an estimate wherever used


@dataclass
class ReplyUsage:
    """One reply's token counts: from the endpoint's usage, or estimated from characters."""

    prompt: int
    completion: int
    estimated: bool


class MedbuilderChat(ChatOpenAI):
    _sent_chars: int = PrivateAttr(default=0)
    _last_usage: ReplyUsage | None = PrivateAttr(default=None)

    def _get_request_payload(self, input_, *, stop=None, **kwargs) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        messages = self._convert_input(input_).to_messages()
        sent = payload.get("messages", [])
        if len(sent) == len(messages):
            for message, entry in zip(messages, sent):
                if isinstance(message, ToolMessage) and message.name and entry.get("role") == "tool":
                    entry["name"] = message.name
        self._sent_chars = len(json.dumps(sent, default=str)) + len(json.dumps(payload.get("tools", []), default=str))
        self._last_usage = None
        return payload

    def _create_chat_result(self, response, generation_info=None):
        self._last_usage = self._usage_of(response)
        return super()._create_chat_result(response, generation_info)

    def take_usage(self) -> ReplyUsage | None:
        """The usage of the last reply the endpoint sent (None when no reply came); reading clears it."""
        usage, self._last_usage = self._last_usage, None
        return usage

    def _usage_of(self, response) -> ReplyUsage:
        data = response if isinstance(response, dict) else getattr(response, "model_dump", lambda: {})()
        usage = data.get("usage") or {} if isinstance(data, dict) else {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            return ReplyUsage(prompt, completion, estimated=False)
        received = len(json.dumps((data or {}).get("choices", []), default=str)) if isinstance(data, dict) else 0
        return ReplyUsage(self._sent_chars // CHARS_PER_TOKEN, received // CHARS_PER_TOKEN, estimated=True)
