"""Parquet files and `datasets` datasets, read through the `datasets` library row by row, images left undecoded.

Streaming keeps memory flat (a benchmark row carries its page twice, as image bytes and as base64 of up to 18 MB)
and writes no cache copy of the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dharma_train.data.sources import RawRow
from dharma_train.errors import DataError


def parquet_rows(path: Path) -> Iterator[RawRow]:
    """A parquet file, or every parquet file under a folder in name order; rows counted from 0 in each file."""
    import datasets

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"data source {path}: no .parquet files in the folder")
    for file in files:
        try:
            rows = datasets.load_dataset("parquet", data_files=[str(file)], split="train", streaming=True)
        except Exception as error:  # noqa: BLE001 - pyarrow and datasets raise many types for unreadable files
            raise DataError(f"{file}: not a readable parquet file ({type(error).__name__}: {error})") from None
        yield from _rows(rows.decode(False), str(file), file.parent)


def dataset_rows(location: Path | str, split: str | None) -> Iterator[RawRow]:
    """A save_to_disk folder (Dataset or DatasetDict), or a Hub dataset streamed; `split` picks one of several."""
    import datasets

    if isinstance(location, Path):
        try:
            loaded = datasets.load_from_disk(str(location))
        except Exception as error:  # noqa: BLE001
            raise DataError(f"{location}: not a dataset saved with save_to_disk ({type(error).__name__}: "
                            f"{error})") from None
        name = str(location)
    else:
        try:
            loaded = datasets.load_dataset(location, streaming=True)
        except Exception as error:  # noqa: BLE001 - offline, unknown, gated: all end the same way for the user
            raise DataError(f"dataset {location!r} cannot be loaded from the Hugging Face Hub "
                            f"({type(error).__name__}: {error}); offline, download it once where the Hub is "
                            f"reachable and give its parquet files or a save_to_disk folder instead") from None
        name = location
    dataset = _pick_split(loaded, split, name)
    if isinstance(dataset, datasets.Dataset):
        dataset = dataset.to_iterable_dataset()
    where = f"{name}:{split}" if split else name
    yield from _rows(dataset.decode(False), where, Path(location) if isinstance(location, Path) else None)


def _pick_split(loaded, split: str | None, name: str):
    if not hasattr(loaded, "keys"):  # a single split
        if split:
            raise DataError(f"{name} is a single dataset, not a DatasetDict; drop ':{split}'")
        return loaded
    splits = sorted(loaded.keys())
    if split is None and len(splits) == 1:
        return loaded[splits[0]]
    if split not in loaded:
        raise DataError(f"{name} has splits {splits}; name one as {name}:SPLIT")
    return loaded[split]


def _rows(dataset, where: str, base: Path | None) -> Iterator[RawRow]:
    for index, fields in enumerate(dataset):
        yield RawRow(f"{where} row {index}", fields, base)
