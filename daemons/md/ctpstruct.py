"""Read every field of an openctp-ctp struct in one C call, straight from its memory.

openctp-ctp's structs are SWIG proxies: each attribute read is a Python-level property call
(about 0.3 us), so reading the 47 fields of a CThostFtdcDepthMarketDataField that way costs
more than the whole tick-to-journal budget. The proxy does expose the C struct's address
(``obj.this``), so :class:`RawStructReader` decodes the struct's memory in place with one
precompiled ``struct.unpack_from``, through a ctypes char array made at that address
(``from_address``: no copy, and a third of the cost of ``ctypes.string_at``, which is a
foreign-function call).

The byte layout is not hard-coded: it is discovered at start-up by writing a distinct value
through each SWIG setter into a probe struct and finding it in the probe's memory (bounded
by ``malloc_usable_size``), so it always matches the installed openctp-ctp build. A field
that cannot be located makes the constructor fail with its name.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import struct
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from hft.daemons.runtime.libc import libc


class LayoutError(RuntimeError):
    """A struct field whose place in memory could not be determined."""


def _char_array_size(probe: Any, name: str) -> int:
    """SWIG refuses a string longer than the char array minus its NUL: find where."""
    for length in range(1, 4096):
        try:
            setattr(probe, name, "Q" * length)
        except TypeError:
            return length
    raise LayoutError(f"{name}: no length limit found for a char array")


R = TypeVar("R", bound=NamedTuple)


class RawStructReader(Generic[R]):
    """Decodes instances of ``struct_type`` into ``record``, a NamedTuple whose fields are
    named after the struct's.

    Text fields come back as the char arrays' raw (NUL-padded) bytes; numbers as float or int.
    A record declared in the struct's memory order is built straight from the one unpack;
    any other order costs one more tuple (a reordering).
    """

    def __init__(self, struct_type: Callable[[], Any], record: type[R]) -> None:
        fields: tuple[str, ...] = record._fields
        probe = struct_type()
        address = int(probe.this)
        size = libc.malloc_usable_size(address)
        placed: list[tuple[int, str, str]] = []  # (offset, struct code, field)
        for serial, name in enumerate(fields):
            kind = type(getattr(probe, name))
            if kind is float:
                marker: bytes = struct.pack("<d", 7.0e5 + serial + 0.0625)
                setattr(probe, name, struct.unpack("<d", marker)[0])
                code = "d"
            elif kind is int:
                marker = struct.pack("<i", 0x5EED0000 + serial)
                setattr(probe, name, struct.unpack("<i", marker)[0])
                code = "i"
            elif kind is str:
                length = _char_array_size(probe, name)
                marker = f"~{serial:03d}#".encode()
                setattr(probe, name, marker.decode())
                code = f"{length}s"
            else:
                raise LayoutError(f"{name}: unsupported field type {kind.__name__}")
            memory = ctypes.string_at(address, size)
            offset = memory.find(marker)
            if offset < 0 or memory.find(marker, offset + 1) >= 0:
                raise LayoutError(f"cannot locate field {name} in {type(probe).__name__}")
            placed.append((offset, code, name))
        placed.sort()
        layout, position = ["<"], 0
        for offset, code, _ in placed:
            layout.append("x" * (offset - position) + code)
            position = offset + struct.calcsize("<" + code)
        self.read = _reader(record, struct.Struct("".join(layout)).unpack_from,
                            (ctypes.c_char * position).from_address,
                            [fields.index(name) for _, _, name in placed])
        """The fields of a live struct (e.g. a callback argument) as a ``record``. Text
        fields are the char arrays' raw bytes, NUL padded: strip them where the text itself
        is needed."""


def _reader(record: type[R], unpack: Callable[[Any], tuple[Any, ...]], view: Callable[[int], Any],
            memory_order: list[int]) -> Callable[[Any], R]:
    """The read function: unpack the struct's memory, then build the record from the values
    (reordered first if the record's field order is not the memory order)."""
    make: Callable[[tuple[Any, ...]], R] = functools.partial(tuple.__new__, record)
    if memory_order == sorted(memory_order):

        def read(obj: Any) -> R:
            return make(unpack(view(int(obj.this))))

        return read
    reorder = operator.itemgetter(*(memory_order.index(n) for n in range(len(memory_order))))

    def read_reordered(obj: Any) -> R:
        return make(reorder(unpack(view(int(obj.this)))))

    return read_reordered
