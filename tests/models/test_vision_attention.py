import torch

from dharma_train.models.config import ModelConfig
from dharma_train.models.loading import load_model
from dharma_train.models.vision_attention import use_varlen_vision_attention, varlen_available


def test_every_vision_layer_is_patched_once_and_cpu_output_is_unchanged(tiny_artifact, pages):
    from PIL import Image

    from dharma_train.models.loading import load_processor

    stock = load_model(tiny_artifact, settings=ModelConfig(vision_attention="stock"))
    patched = load_model(tiny_artifact, settings=ModelConfig(vision_attention="varlen"))
    depth = stock.config.vision_config.depth
    assert use_varlen_vision_attention(patched) == 0  # already patched: idempotent
    assert sum(hasattr(m, "_dharma_stock_forward") for m in patched.modules()) == (depth if varlen_available() else 0)
    image = Image.open(pages[1].pages[0].image).convert("RGB")
    inputs = load_processor(tiny_artifact.path).image_processor(images=[image], return_tensors="pt")
    pixels, grid = inputs["pixel_values"], inputs["image_grid_thw"]
    with torch.inference_mode():
        a, b = stock.model.visual(pixels, grid_thw=grid), patched.model.visual(pixels, grid_thw=grid)
    a, b = getattr(a, "pooler_output", a), getattr(b, "pooler_output", b)
    assert torch.equal(a, b)  # on CPU the patched forward falls back to the stock computation
