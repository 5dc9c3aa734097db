"""Reader for CTranslate2's ``model.bin``.

The layout is the one written by ``ModelSpec._serialize`` in ``ctranslate2/specs/model_spec.py``
and read by ``Model::load`` in CTranslate2's C++ runtime, all little-endian:

* uint32 binary version, string spec name, uint32 spec revision;
* uint32 variable count, then per variable: string name, uint8 rank, rank x uint32 dims,
  uint8 dtype id, uint32 byte count, the raw bytes;
* uint32 alias count, then per alias: string alias, string target variable name.

A string is a uint16 length, counting a trailing NUL, followed by that many bytes.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ExportError

logger = logging.getLogger(__name__)

# Version 4 introduced dtype ids and byte counts; 6 is the newest (CTranslate2 4.x).
SUPPORTED_BINARY_VERSIONS = range(4, 7)

# Indexed by dtype id: the order of the DataType enum in include/ctranslate2/types.h.
DTYPES: tuple[torch.dtype, ...] = (
    torch.float32,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.float16,
    torch.bfloat16,
)


@dataclass(frozen=True)
class CT2Model:
    """The content of a model.bin; an alias maps to the very tensor it names."""

    spec_name: str
    spec_revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]


class _Reader:
    """Sequential reads that fail with a clear message when the file is short."""

    def __init__(self, fp: io.BufferedIOBase, path: Path) -> None:
        self._fp = fp
        self._path = path
        self._size = path.stat().st_size

    def _check_room(self, count: int, what: str) -> None:
        offset = self._fp.tell()
        if offset + count > self._size:
            raise ExportError(
                f"{self._path} is truncated or corrupt: {what} needs {count} bytes at offset "
                f"{offset}, but the file is {self._size} bytes long"
            )

    def read(self, count: int, what: str) -> bytearray:
        self._check_room(count, what)
        buffer = bytearray(count)
        if self._fp.readinto(buffer) != count:
            raise ExportError(f"{self._path} is truncated: short read of {what}")
        return buffer

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        layout = struct.Struct("<" + fmt)
        return layout.unpack(self.read(layout.size, what))

    def uint(self, fmt: str, what: str) -> int:
        return self.unpack(fmt, what)[0]

    def string(self, what: str) -> str:
        length = self.uint("H", f"length of {what}")
        raw = self.read(length, what)
        if length == 0 or raw[-1] != 0:
            raise ExportError(f"{self._path} is corrupt: {what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExportError(f"{self._path} is corrupt: {what} is not UTF-8") from exc

    def remaining(self) -> int:
        return self._size - self._fp.tell()

    def corrupt(self, detail: str) -> ExportError:
        return ExportError(f"{self._path} is corrupt: {detail}")


def _read_variable(reader: _Reader) -> tuple[str, torch.Tensor]:
    name = reader.string("variable name")
    rank = reader.uint("B", f"rank of {name}")
    shape = reader.unpack("I" * rank, f"shape of {name}") if rank else ()
    type_id = reader.uint("B", f"dtype of {name}")
    if type_id >= len(DTYPES):
        raise reader.corrupt(f"variable {name} has unknown dtype id {type_id}")
    dtype = DTYPES[type_id]
    num_bytes = reader.uint("I", f"byte count of {name}")
    expected = math.prod(shape) * dtype.itemsize
    if num_bytes != expected:
        raise reader.corrupt(
            f"variable {name} {list(shape)} {dtype} declares {num_bytes} bytes, expected {expected}"
        )
    if num_bytes == 0:
        return name, torch.empty(shape, dtype=dtype)
    data = reader.read(num_bytes, f"data of {name}")
    return name, torch.frombuffer(data, dtype=dtype).reshape(shape)


def read_model_bin(path: Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into tensors, resolving aliases."""
    try:
        fp = path.open("rb")
    except OSError as exc:
        raise ExportError(f"cannot open {path}: {exc.strerror}") from exc
    with fp:
        reader = _Reader(fp, path)
        version = reader.uint("I", "binary version")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise ExportError(
                f"{path} is not a CTranslate2 model.bin that this exporter reads "
                f"(binary version {version}, supported {SUPPORTED_BINARY_VERSIONS.start}-"
                f"{SUPPORTED_BINARY_VERSIONS.stop - 1})"
            )
        spec_name = reader.string("spec name")
        revision = reader.uint("I", "spec revision")
        count = reader.uint("I", "variable count")
        variables = dict(_read_variable(reader) for _ in range(count))
        for _ in range(reader.uint("I", "alias count")):
            alias = reader.string("alias name")
            target = reader.string(f"target of alias {alias}")
            if target not in variables:
                raise reader.corrupt(f"alias {alias} points to missing variable {target}")
            variables[alias] = variables[target]
        if reader.remaining():
            raise reader.corrupt(f"{reader.remaining()} unexpected bytes after the aliases")
    logger.debug("read %s: %s rev %d, %d variables", path, spec_name, revision, len(variables))
    return CT2Model(spec_name, revision, version, variables)
