"""The LLM core: the agents' tool-calling loop (``loop.py``: model mistakes, endpoint faults, step limits,
token counts) against any OpenAI-compatible endpoint, through `langchain-openai` (``MedbuilderChat``)."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from medbuilder.agents.core import RoleJob
from medbuilder.agents.llm_client import MedbuilderChat
from medbuilder.agents.loop import ToolLoop


class LlmCore(ToolLoop):
    name = "llm"

    def __init__(self, chat: ChatOpenAI, model: str, max_steps: int, endpoint_retries: int = 4, backoff_s: float = 1.0,
                 format_retries: int = 2):
        super().__init__(max_steps, endpoint_retries, backoff_s, format_retries)
        self.chat, self.model = chat, model

    @classmethod
    def from_settings(cls, settings) -> "LlmCore":
        chat = MedbuilderChat(base_url=settings.llm_base_url, model=settings.llm_model,
                              api_key=settings.llm_api_key.get_secret_value(), max_retries=0,
                              timeout=settings.llm_timeout_s, temperature=0)
        return cls(chat, settings.llm_model, settings.max_steps, settings.llm_retries, settings.llm_backoff_s)

    def chat_for(self, job: RoleJob) -> ChatOpenAI:
        return self.chat
