"""The instructions a page is paired with, one per task; training and evaluation use the same ones."""

from __future__ import annotations

STRUCTURED_PROMPT = (
    "Transcreva esta página. Responda apenas com um objeto JSON com as chaves "
    '"header", "margin", "footer" e "text".'
)
PLAIN_PROMPT = "Transcreva todo o texto desta página."
# The general-OCR rung reads pages in any language and answers in Markdown, as general OCR models do; asked in
# Portuguese like the other rungs, so what it learns (read the page, then stop) carries over to them.
GENERAL_PROMPT = "Transcreva esta página em Markdown, na ordem de leitura."

PROMPTS = {"structured": STRUCTURED_PROMPT, "plain": PLAIN_PROMPT, "general": GENERAL_PROMPT}
TASKS = tuple(PROMPTS)


def prompt_messages(task: str) -> list[dict]:
    """A one-turn user message with the page image placeholder first, as Qwen2.5-VL is trained."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPTS[task]}]}]


def target_text(answer, task: str) -> str:
    """The answer a page trains toward: the schema JSON, or the transcription in reading order (plain, general)."""
    return answer.to_json() if task == "structured" else answer.to_plain_text()
