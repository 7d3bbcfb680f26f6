"""SmolVLM prompt text: the chat template and the Idefics3 image-token expansion, in Python.

``HuggingFaceTB/SmolVLM-*-Instruct`` ship this Jinja chat template::

    <|im_start|>{% for message in messages %}{{message['role'] | capitalize}}
    {% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}
    {% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}
    {% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\\n
    {% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}

For our single user turn "image, then instruction" it renders to the string built below, so
the runtime needs no Jinja. The ``Idefics3Processor`` then replaces each ``<image>`` by the
tile tokens built in :func:`expand_image_tokens`.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"
ASSISTANT_PREFIX = "Assistant:"


def chat_prompt(instruction: str) -> str:
    """The chat template rendered for one user turn [image, text] plus the generation prompt."""
    # The role is "user" | capitalize; a turn that starts with an image gets ":" (no space).
    return f"<|im_start|>User:{IMAGE_TOKEN}{instruction}{END_OF_UTTERANCE}\n{ASSISTANT_PREFIX}"


def expand_image_tokens(rows: int, cols: int, image_seq_len: int) -> str:
    """What ``Idefics3Processor`` puts in place of one ``<image>`` for a rows x cols tiling."""
    image_tokens = IMAGE_TOKEN * image_seq_len
    global_image = f"{FAKE_IMAGE_TOKEN}{GLOBAL_IMAGE_TOKEN}{image_tokens}{FAKE_IMAGE_TOKEN}"
    if rows == 0 and cols == 0:
        return global_image
    text = ""
    for row in range(rows):
        for col in range(cols):
            text += f"{FAKE_IMAGE_TOKEN}<row_{row + 1}_col_{col + 1}>{image_tokens}"
        text += "\n"
    return text + "\n" + global_image


def model_prompt(instruction: str, rows: int, cols: int, image_seq_len: int) -> str:
    """The full text the tokenizer sees for one image and one instruction."""
    return chat_prompt(instruction).replace(IMAGE_TOKEN, expand_image_tokens(rows, cols, image_seq_len), 1)


def clean_caption(text: str) -> str:
    """Strip whitespace and the "Assistant:" prefix some checkpoints echo back."""
    text = text.strip()
    if text.startswith(ASSISTANT_PREFIX):
        text = text[len(ASSISTANT_PREFIX) :].strip()
    return text
