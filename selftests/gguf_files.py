"""Just enough of the GGUF format to read a file's metadata (llama.cpp's vocabulary files, see tiny_tokenizers.py)
and to rewrite one value in place, as a tampered or mislabelled file would have it (the `gguf` package is not
importable here: it comes only with the converter, kept off sys.path)."""

from __future__ import annotations

import struct
from pathlib import Path

FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY, UINT32 = 8, 9, 4


def _skip(fh, value_type: int) -> None:
    if value_type in FIXED:
        fh.seek(FIXED[value_type], 1)
    elif value_type == STRING:
        (length,) = struct.unpack("<Q", fh.read(8))
        fh.seek(length, 1)
    elif value_type == ARRAY:
        item_type, count = struct.unpack("<IQ", fh.read(12))
        if item_type in FIXED:
            fh.seek(FIXED[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(fh, item_type)
    else:
        raise ValueError(f"unknown GGUF value type {value_type}")


def _read(fh, value_type: int):
    if value_type in FORMATS:
        return struct.unpack("<" + FORMATS[value_type], fh.read(FIXED[value_type]))[0]
    if value_type == STRING:
        (length,) = struct.unpack("<Q", fh.read(8))
        return fh.read(length).decode("utf-8", errors="surrogateescape")
    if value_type == ARRAY:
        item_type, count = struct.unpack("<IQ", fh.read(12))
        if item_type in FORMATS:
            return list(struct.unpack(f"<{count}{FORMATS[item_type]}", fh.read(FIXED[item_type] * count)))
        return [_read(fh, item_type) for _ in range(count)]
    raise ValueError(f"unknown GGUF value type {value_type}")


def _walk(path: Path, visit) -> dict:
    """key -> what visit(fh, value type) returns, called with the file at the key's value; visit leaves the file
    after the value."""
    with Path(path).open("rb") as fh:
        magic, _version, _tensors, count = struct.unpack("<4sIQQ", fh.read(24))
        assert magic == b"GGUF", f"{path}: not a GGUF file"
        found = {}
        for _ in range(count):
            (length,) = struct.unpack("<Q", fh.read(8))
            key = fh.read(length).decode("utf-8")
            (value_type,) = struct.unpack("<I", fh.read(4))
            found[key] = visit(fh, value_type)
    return found


def read_metadata(path: Path) -> dict:
    """Every metadata key and its value (arrays as lists)."""
    return _walk(path, _read)


def metadata_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """key -> (value type, file offset of the value)."""

    def offset(fh, value_type: int) -> tuple[int, int]:
        at = fh.tell()
        _skip(fh, value_type)
        return value_type, at

    return _walk(path, offset)


def set_uint32(path: Path, key: str, value: int) -> int:
    """Overwrite a uint32 metadata value in place; returns the old value."""
    value_type, offset = metadata_offsets(path)[key]
    assert value_type == UINT32, f"{path}: {key} has GGUF type {value_type}, not uint32"
    with Path(path).open("r+b") as fh:
        fh.seek(offset)
        (old,) = struct.unpack("<I", fh.read(4))
        fh.seek(offset)
        fh.write(struct.pack("<I", value))
    return old
