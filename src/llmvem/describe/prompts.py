"""Named prompt templates for describers.

``{label}`` in a template is replaced by the image's category label (class-conditioned prompts, as GPT4Image v3
recommends); any other text is used as a free-text prompt.
"""

from __future__ import annotations

from llmvem.errors import DataError

PROMPTS: dict[str, str] = {
    "caption": "Describe this image in one sentence.",
    "detailed": (
        "Describe what you see in this image. Include the setting, main elements, colors, lighting, and overall "
        "composition. Be specific and detailed. Form the response as a continuous paragraph. Maximum 200 words."
    ),
    "class_conditioned": "This is an image of a {label}. Describe the {label} and its surroundings in one paragraph.",
}


def resolve_prompt(prompt: str, label: str | None = None) -> str:
    """The text of a named prompt (or ``prompt`` itself when it is not a name), with ``{label}`` filled in."""
    text = PROMPTS.get(prompt, prompt)
    if "{label}" in text:
        if label is None:
            raise DataError(f"prompt {prompt!r} needs each image's label, but the stimulus set has no labels")
        text = text.replace("{label}", label)
    return text
