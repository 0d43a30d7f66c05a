"""A CTC head on the vision tower's per-patch features before the 2x2 merge: a loss only the image can lower.

The tower's last hidden states (one per 14 px patch, in Qwen2.5-VL's window order) are put back in image order,
averaged over the patch rows of each line band (two rows: a 28 px line), and each patch column becomes
`frames_per_column` CTC frames. The head is not part of the shipped model; it is saved beside it for resuming.
"""

from __future__ import annotations

import string

import torch
from torch import nn

# Every character of the line data and of the readable pages' text; index 0 of the head is CTC's blank.
ALPHABET = (" " + string.ascii_letters + string.digits + "áàâãéêíóôõúüçÁÀÂÃÉÊÍÓÔÕÚÜÇ"
            + ".,;:-–—/()$%ºª°'\"!?&+=@#_§|*")
INDEX = {char: index + 1 for index, char in enumerate(ALPHABET)}


def encode(text: str) -> list[int]:
    """CTC target ids of `text`; characters outside the alphabet are dropped (the data draws none)."""
    return [INDEX[char] for char in text if char in INDEX]


def covered(text: str) -> bool:
    return all(char in INDEX for char in text)


class CTCHead(nn.Module):
    """LayerNorm and one linear map from a patch column's pooled feature to `frames_per_column` frames."""

    def __init__(self, width: int, frames_per_column: int = 3):
        super().__init__()
        self.frames_per_column, self.classes = frames_per_column, len(ALPHABET) + 1
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, frames_per_column * self.classes)

    def forward(self, columns: torch.Tensor) -> torch.Tensor:
        """(N, W, C) pooled columns -> (N, W * frames, classes) log-probabilities."""
        n, width, _ = columns.shape
        logits = self.proj(self.norm(columns.float())).view(n, width * self.frames_per_column, self.classes)
        return logits.log_softmax(-1)


class PatchFeatures:
    """A forward hook on the vision tower keeping its pre-merge output, returned as line bands of patch columns."""

    def __init__(self, model, band_rows: int = 2):
        self.visual = model.model.visual
        self.band_rows, self.captured, self.orders = band_rows, None, {}
        self.handle = self.visual.register_forward_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs, output) -> None:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        self.captured = (hidden, grid)

    def bands(self) -> torch.Tensor:
        """(B, lines, columns, C) features of the last forward pass; every image of the batch has one size."""
        hidden, grid = self.captured
        merge = self.visual.spatial_merge_size
        images, (_, rows, columns) = len(grid), grid[0].tolist()
        natural = torch.empty_like(hidden.view(-1, merge * merge, hidden.shape[-1]))
        natural[self._window_order(grid, hidden.device)] = hidden.view(natural.shape)
        patches = natural.view(images, rows // merge, columns // merge, merge, merge, -1)
        patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(images, rows, columns, -1)
        return patches.view(images, rows // self.band_rows, self.band_rows, columns, -1).mean(2)

    def _window_order(self, grid: torch.Tensor, device) -> torch.Tensor:
        """Where each merge unit went in the tower's window order (cached per batch shape)."""
        key = tuple(map(tuple, grid.tolist()))
        if key not in self.orders:
            from transformers.vision_utils import get_vision_window_index

            index, _ = get_vision_window_index(grid.cpu(), self.visual.spatial_merge_size, self.visual.window_size,
                                               self.visual.patch_size)
            self.orders[key] = index.to(device)
        return self.orders[key]

    def remove(self) -> None:
        self.handle.remove()


def ctc_loss(head: CTCHead, bands: torch.Tensor, targets: list[list[list[int]]]) -> torch.Tensor:
    """Mean CTC loss over every line band of every image; `targets[image][band]` are its character ids."""
    images, lines, columns, width = bands.shape
    log_probs = head(bands.reshape(images * lines, columns, width))
    flat = [band for image in targets for band in (image + [[]] * (lines - len(image)))[:lines]]
    lengths = torch.tensor([len(ids) for ids in flat], dtype=torch.long)
    concatenated = torch.tensor([i for ids in flat for i in ids], dtype=torch.long, device=bands.device)
    frames = torch.full((len(flat),), log_probs.shape[1], dtype=torch.long)
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), concatenated, frames, lengths, blank=0,
                                  reduction="mean", zero_infinity=True)


def greedy_decode(log_probs: torch.Tensor) -> list[str]:
    """Best path: the most likely class per frame, repeats collapsed, blanks removed."""
    texts = []
    for path in log_probs.argmax(-1).tolist():
        chars, previous = [], 0
        for index in path:
            if index != previous and index != 0:
                chars.append(ALPHABET[index - 1])
            previous = index
        texts.append("".join(chars))
    return texts
