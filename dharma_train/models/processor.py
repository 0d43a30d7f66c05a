"""An image-only Qwen2.5-VL processor, because the stock one requires a video processor that needs torchvision."""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor with the image path only; text, chat template and image-token expansion unchanged."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)
