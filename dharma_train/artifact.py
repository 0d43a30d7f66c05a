"""A model artifact: where a model lives and how to load it, the only thing stages hand to each other."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dharma_train.files import write_json_atomically

ARTIFACT_FILE = "artifact.json"


@dataclass(frozen=True)
class ModelArtifact:
    """A hub id or local folder holding full weights, or a peft adapter over another artifact (`base`)."""

    path: str
    base: "ModelArtifact | None" = None
    processor_path: str | None = None  # defaults to `path`; every stage saves the processor beside its weights

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    @property
    def processor_location(self) -> str:
        return self.processor_path or self.path

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()

    def weights_bytes(self) -> int | None:
        """Size of the safetensors weights on disk, the base's included for an adapter; None for a hub id."""
        if not self.is_local:
            return None
        base = self.base.weights_bytes() if self.base else 0
        own = sum(f.stat().st_size for f in Path(self.path).glob("*.safetensors"))
        return None if base is None else base + own

    def to_dict(self) -> dict:
        return {"path": self.path, "processor_path": self.processor_path,
                "base": self.base.to_dict() if self.base else None}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelArtifact":
        base = cls.from_dict(data["base"]) if data.get("base") else None
        return cls(path=data["path"], base=base, processor_path=data.get("processor_path"))

    def save(self, folder: str | Path) -> Path:
        """Record the artifact beside a stage's outputs so a later run can pick it up from disk."""
        return write_json_atomically(Path(folder) / ARTIFACT_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "ModelArtifact":
        return cls.from_dict(json.loads((Path(folder) / ARTIFACT_FILE).read_text()))


def base_artifact(path: str) -> ModelArtifact:
    """The starting model: an embedded one (models/config.EMBEDDED), a hub id or a folder."""
    from dharma_train.models.config import embedded_dir

    return ModelArtifact(path=embedded_dir(path))
