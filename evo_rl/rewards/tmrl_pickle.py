"""A safe reader for pickled numeric arrays (TMRL's ``reward.pkl``): the opcodes are
interpreted here, nothing named in the file is ever called."""

from __future__ import annotations

import io
import pickletools

import numpy as np

from evo_rl.errors import EvoError


def read_tmrl_pickle(data: bytes, what: str = "reward.pkl") -> np.ndarray:
    """Decode a pickled numeric array (TMRL's ``reward.pkl``) without executing the pickle.

    The opcodes are read with :mod:`pickletools` and interpreted here: only numbers,
    strings, bytes, lists, tuples and the few NumPy constructors that rebuild a
    numeric ndarray or scalar are understood, and those are rebuilt by this code,
    never by calling what the file names. Anything else is refused.
    """
    try:
        ops = list(pickletools.genops(io.BytesIO(data)))
    except Exception as e:  # noqa: BLE001 - any malformed stream is refused the same way
        raise EvoError(f"{what} is not a valid pickle: {e}") from None
    return _PickleReader(what).run(ops)


_NUMPY_MODULES = (
    "numpy",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
)
_ALLOWED_GLOBALS = {"ndarray", "dtype", "_reconstruct", "_frombuffer", "scalar"}
_NUMERIC_KINDS = "fiu"
_PUSH_ARG = {
    "INT", "LONG", "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
}  # fmt: skip
_PUSH_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}


class _Global:
    def __init__(self, name: str) -> None:
        self.name = name


class _DType:
    def __init__(self, code: str) -> None:
        self.code = code
        self.order: str = "<"

    def dtype(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(">" if self.order == ">" else "<" if self.order == "<" else "=")


class _ArrayStub:
    """An array from ``_reconstruct`` waiting for its BUILD state."""


class _PickleReader:
    def __init__(self, what: str) -> None:
        self.what = what

    def refuse(self, why: str) -> EvoError:
        return EvoError(
            f"{self.what} refused: {why}. Only a pickled numeric array (a NumPy number array or a list of "
            "lists of numbers) is accepted; nothing from the file was run"
        )

    def run(self, ops: list) -> np.ndarray:
        stack: list = []
        marks: list[int] = []
        memo: dict = {}
        for op, arg, _pos in ops:
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                break
            if name == "MARK":
                marks.append(len(stack))
            elif name in _PUSH_ARG:
                stack.append(arg)
            elif name in _PUSH_BYTES:
                stack.append(bytes(arg))
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
            elif name in ("EMPTY_LIST", "EMPTY_TUPLE"):
                stack.append([] if name == "EMPTY_LIST" else ())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise self.refuse("its stack underflows")
                items = tuple(stack[len(stack) - n :])
                del stack[len(stack) - n :]
                stack.append(items)
            elif name in ("TUPLE", "LIST", "APPENDS"):
                if not marks:
                    raise self.refuse("it has no mark")
                start = marks.pop()
                items = tuple(stack[start:])
                del stack[start:]
                if name == "APPENDS":
                    self._list(stack).extend(items)
                else:
                    stack.append(items if name == "TUPLE" else list(items))
            elif name == "APPEND":
                item = self._pop(stack)
                self._list(stack).append(item)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = self._top(stack)
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise self.refuse("it refers to an unknown memo entry")
                stack.append(memo[arg])
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, qual = str(arg).partition(" ")
                else:
                    qual, module = str(self._pop(stack)), str(self._pop(stack))
                stack.append(self._global(module, qual))
            elif name == "REDUCE":
                args, func = self._pop(stack), self._pop(stack)
                stack.append(self._call(func, args))
            elif name == "BUILD":
                state = self._pop(stack)
                stack[-1] = self._build(self._top(stack), state)
            else:
                raise self.refuse(f"it uses the pickle opcode {name}")
        if len(stack) != 1:
            raise self.refuse("it does not hold exactly one object")
        return self._result(stack[0])

    def _pop(self, stack: list) -> object:
        if not stack:
            raise self.refuse("its stack underflows")
        return stack.pop()

    def _top(self, stack: list) -> object:
        if not stack:
            raise self.refuse("its stack underflows")
        return stack[-1]

    def _list(self, stack: list) -> list:
        if not stack or not isinstance(stack[-1], list):
            raise self.refuse("it appends to something that is not a list")
        return stack[-1]

    def _global(self, module: object, qual: object) -> _Global:
        if module in _NUMPY_MODULES and qual in _ALLOWED_GLOBALS:
            return _Global(str(qual))
        if (module, qual) == ("_codecs", "encode"):
            return _Global("encode")
        raise self.refuse(f"it names {module}.{qual}, which could run code")

    def _call(self, func: object, args: object) -> object:
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise self.refuse("it calls something that is not a NumPy array constructor")
        if func.name == "dtype" and args and isinstance(args[0], str):
            if not _is_numeric_dtype(args[0]):
                raise self.refuse(f"it holds values of dtype {args[0]!r}, not numbers")
            return _DType(args[0])
        if func.name == "_reconstruct" and args and isinstance(args[0], _Global) and args[0].name == "ndarray":
            return _ArrayStub()
        if func.name == "encode" and len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
            return args[0].encode("latin1")
        if func.name == "_frombuffer" and len(args) == 4:
            buf, dtype, shape, order = args
            return self._array(buf, dtype, shape, order == "F")
        if func.name == "scalar" and len(args) == 2 and isinstance(args[0], _DType) and isinstance(args[1], bytes):
            value = self._array(args[1], args[0], (), False)
            return float(value)
        raise self.refuse(f"it calls numpy {func.name} in a way a numeric array does not")

    def _build(self, obj: object, state: object) -> object:
        if isinstance(obj, _DType) and isinstance(state, tuple) and len(state) >= 2:
            obj.order = state[1] if isinstance(state[1], str) else "<"
            return obj
        if isinstance(obj, _ArrayStub) and isinstance(state, tuple) and len(state) == 5:
            _version, shape, dtype, fortran, raw = state
            return self._array(raw, dtype, shape, bool(fortran))
        raise self.refuse("it sets the state of an object that is not a NumPy array")

    def _array(self, raw: object, dtype: object, shape: object, fortran: bool) -> np.ndarray:
        if not isinstance(dtype, _DType):
            raise self.refuse("its array has no numeric dtype")
        if not isinstance(raw, bytes):
            raise self.refuse("its array data is not raw numbers (an object array?)")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise self.refuse("its array shape is not a tuple of sizes")
        dt = dtype.dtype()
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise self.refuse("its array data does not match its shape")
        return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").astype(np.float64)

    def _result(self, obj: object) -> np.ndarray:
        if isinstance(obj, np.ndarray):
            return obj
        if isinstance(obj, (list, tuple)):
            rows = []
            for r in obj:
                if isinstance(r, np.ndarray) and r.ndim == 1:
                    r = r.tolist()
                if not (isinstance(r, (list, tuple)) and all(_is_number(x) for x in r)):
                    raise self.refuse("it holds a list that is not a list of rows of numbers")
                rows.append(list(r))
            if len({len(r) for r in rows}) > 1:
                raise self.refuse("its rows have different lengths")
            return np.array(rows, dtype=np.float64)
        raise self.refuse(f"it holds a {type(obj).__name__}, not an array")


def _is_numeric_dtype(code: str) -> bool:
    try:
        return np.dtype(code).kind in _NUMERIC_KINDS
    except (TypeError, ValueError):
        return False


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
