"""A function of x typed by the user, like "sin(6*x)": parsed into a small tree, evaluated with numpy.

`--func` takes it (config.canonical_function); the parser and evaluator stand on their own.

Allowed, and nothing else:
- numbers: int and float literals up to 1e15 in size (no complex, no True/None/strings);
- the variable x and the constants pi and e;
- the operators + - * / ** (precedence as in Python: -x**2 is -(x**2)), unary - and +, parentheses;
- the functions of FUNCTIONS with their fixed number of positional arguments;
- comparisons < <= > >= == !=, chained like 0 < x < 1, only as the first argument of where(cond, a, b), and that
  argument must be one (where(x, 1, 2) is refused: say where(x != 0, 1, 2)). There is no and/or/not: nest where.
Refused: any other name, attributes, subscripts, keyword or starred arguments, lambdas, comprehensions, a if c else b,
calls of anything but a listed function, text longer than MAX_LENGTH or nested deeper than MAX_DEPTH, non-ASCII.
Every refusal is one ConfigError on one line saying what is wrong and at which column.

Why no eval: the text comes from outside, and even a "restricted" eval reaches os through ().__class__.__mro__.
So Python only parses it (ast.parse runs nothing; the nesting is bounded first, as a deep enough text overflows the
parser), the syntax tree is checked node by node against the list above, and what comes out is this module's own
immutable tree, evaluated by numpy on float64 arrays. No code from the text runs, and no Python int arithmetic is
ever done (10**10**10 is a float64 power: inf at once, which check_finite then refuses).
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

MAX_LENGTH = 500  # characters of text
MAX_DEPTH = 100  # brackets nested in the text, and levels of the tree; Python's own parser stops at 200 brackets
MAX_LITERAL = 1e15  # a larger number literal is a typo (and ints up to it are exact in float64)
MAX_VALUE = 1e12  # check_finite: larger values overflow the float32 training sooner or later

FUNCTIONS = {  # name: (number of arguments, the numpy function)
    "sin": (1, np.sin), "cos": (1, np.cos), "tan": (1, np.tan), "exp": (1, np.exp), "log": (1, np.log),
    "sqrt": (1, np.sqrt), "abs": (1, np.abs), "tanh": (1, np.tanh), "arcsin": (1, np.arcsin),
    "arccos": (1, np.arccos), "arctan": (1, np.arctan), "sinh": (1, np.sinh), "cosh": (1, np.cosh),
    "floor": (1, np.floor), "ceil": (1, np.ceil), "sign": (1, np.sign),
    "minimum": (2, np.minimum), "maximum": (2, np.maximum), "clip": (3, np.clip), "where": (3, np.where),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
ALLOWED_NAMES = ", ".join(["x", *CONSTANTS, *FUNCTIONS])

_UNARY = {ast.USub: "-", ast.UAdd: "+"}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_OTHER_OPERATORS = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
                    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Invert: "~"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_NUMPY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power, "<": np.less,
          "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}
# Python's precedence, for printing with no more parentheses than needed
_PRECEDENCE = {"compare": 1, "+": 2, "-": 2, "*": 3, "/": 3, "unary": 4, "**": 5, "atom": 6}


# --- the tree -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Variable:
    """x"""


@dataclass(frozen=True)
class Constant:
    name: str  # pi or e


@dataclass(frozen=True)
class Unary:
    op: str  # - or +
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / **
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare:
    """a < b <= c …: len(operands) == len(ops) + 1; only as where's condition."""

    ops: tuple[str, ...]
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Call:
    name: str  # a key of FUNCTIONS
    args: tuple[Node, ...]


Node = Number | Variable | Constant | Unary | Binary | Compare | Call


@dataclass(frozen=True)
class Expression:
    """A checked function of x: `text` is its normalised spelling, `evaluate` its values."""

    root: Node

    @property
    def text(self) -> str:
        return _show(self.root)

    def __str__(self) -> str:
        return self.text

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """The values at `x` as float64 of x's shape; NaN or ±inf where undefined, never a warning."""
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            values = _values(self.root, x)
        return np.array(np.broadcast_to(values, x.shape), dtype=np.float64)


def _values(node: Node, x: np.ndarray) -> Any:
    if isinstance(node, Number):
        return np.float64(node.value)
    if isinstance(node, Variable):
        return x
    if isinstance(node, Constant):
        return np.float64(CONSTANTS[node.name])
    if isinstance(node, Unary):
        operand = _values(node.operand, x)
        return np.negative(operand) if node.op == "-" else operand
    if isinstance(node, Binary):
        return _NUMPY[node.op](_values(node.left, x), _values(node.right, x))
    if isinstance(node, Compare):
        values = [_values(operand, x) for operand in node.operands]
        result = np.bool_(True)
        for op, left, right in zip(node.ops, values, values[1:]):
            result = np.logical_and(result, _NUMPY[op](left, right))
        return result
    return FUNCTIONS[node.name][1](*(_values(arg, x) for arg in node.args))


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _PRECEDENCE[node.op]
    return _PRECEDENCE["unary" if isinstance(node, Unary) else "compare" if isinstance(node, Compare) else "atom"]


def _show(node: Node, at_least: int = 0) -> str:
    """The text of `node`, in parentheses if its precedence is below `at_least`."""
    if isinstance(node, Number):
        value = node.value
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(node, Variable):
        text = "x"
    elif isinstance(node, Constant):
        text = node.name
    elif isinstance(node, Unary):
        text = node.op + _show(node.operand, _PRECEDENCE["unary"])
    elif isinstance(node, Binary):
        own = _PRECEDENCE[node.op]
        if node.op == "**":  # right-associative, and its right side may be signed: 2 ** -1
            left, right = _show(node.left, own + 1), _show(node.right, _PRECEDENCE["unary"])
        else:  # left-associative: a - (b - c)
            left, right = _show(node.left, own), _show(node.right, own + 1)
        text = f"{left} {node.op} {right}"
    elif isinstance(node, Compare):
        parts = [_show(node.operands[0], _PRECEDENCE["+"])]
        for op, operand in zip(node.ops, node.operands[1:]):
            parts += [op, _show(operand, _PRECEDENCE["+"])]
        text = " ".join(parts)
    else:
        text = f"{node.name}({', '.join(_show(arg) for arg in node.args)})"
    return f"({text})" if _precedence(node) < at_least else text


# --- parsing --------------------------------------------------------------------------------------------------------


def parse_expression(text: str) -> Expression:
    """Check the user's text and build its tree; raises ConfigError saying what is wrong and where."""
    if not isinstance(text, str):
        raise ConfigError(f"the function must be a text like sin(6*x), not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"the function is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    text = re.sub(r"[\t\n\r\f\v]", " ", text)  # any whitespace counts as a space: one line, columns hold
    for column, char in enumerate(text, 1):
        if not " " <= char <= "~":
            raise ConfigError(f"character {char!r} at column {column} is not allowed: use ASCII letters, digits and "
                              "+ - * / ( ) , < > =")
    body = text.lstrip()
    if not body.strip():
        raise ConfigError("the function is empty: give an expression in x, like sin(6*x)")
    lead = len(text) - len(body)  # Python refuses leading spaces ("unexpected indent")
    _check_brackets(text)
    try:
        with warnings.catch_warnings():  # the parser warns of some literals ("invalid escape sequence")
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        column = lead + exc.offset if exc.offset and 0 < exc.offset <= len(body) else len(text) + 1
        raise ConfigError(f"syntax error in the function: {' '.join(exc.msg.split())} at column {column}") from None
    except (RecursionError, MemoryError):
        raise ConfigError("the function is nested too deeply for Python's parser") from None
    return Expression(_Builder(body, lead).build(tree.body, 1))


def _check_brackets(text: str) -> None:
    depth = 0
    for column, char in enumerate(text, 1):
        depth += (char in "([{") - (char in ")]}")
        if depth > MAX_DEPTH:
            raise ConfigError(f"the function nests brackets deeper than {MAX_DEPTH} at column {column}")


class _Builder:
    """Turns a Python syntax tree into this module's tree, refusing every node not on the list."""

    def __init__(self, body: str, lead: int) -> None:
        self.body = body  # the text Python parsed: one line of ASCII, so offsets are columns
        self.lead = lead  # characters stripped before it

    def source(self, node: ast.AST) -> str:
        return _short(self.body[node.col_offset:node.end_col_offset])

    def refuse(self, node: ast.AST, what: str, then: str = "") -> ConfigError:
        """'<what> at column N<then>', N counted from 1 in the user's text."""
        return ConfigError(f"{what} at column {self.lead + node.col_offset + 1}{then}")

    def build(self, node: ast.expr, depth: int, condition: bool = False) -> Node:
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"the function nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return Unary(_UNARY[type(node.op)], self.build(node.operand, depth + 1))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return Binary(_BINARY[type(node.op)], self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Compare):
            if not condition:
                raise self.refuse(node, "a comparison", " is allowed only as the first argument of where(cond, a, b)")
            if not all(type(op) in _COMPARE for op in node.ops):
                raise self.refuse(node, "is and in are not allowed", ": only the comparisons < <= > >= == !=")
            operands = (node.left, *node.comparators)
            return Compare(tuple(_COMPARE[type(op)] for op in node.ops),
                           tuple(self.build(operand, depth + 1) for operand in operands))
        raise self.refuse(node, *_refused(node, self.source(node)))

    def number(self, node: ast.Constant) -> Number:
        value = node.value
        if type(value) not in (int, float):
            kind = {str: "a string", bytes: "bytes", complex: "a complex number"}.get(type(value), repr(value))
            raise self.refuse(node, f"{kind} is not allowed", ": only numbers, x, pi and e")
        if not abs(value) <= MAX_LITERAL:  # also inf (1e400) and NaN; a Python int is compared, never raised to
            raise self.refuse(node, f"the number {self.source(node)} is too large", f" (at most {MAX_LITERAL:g})")
        return Number(float(value))

    def name(self, node: ast.Name) -> Node:
        if node.id == "x":
            return Variable()
        if node.id in CONSTANTS:
            return Constant(node.id)
        if node.id in FUNCTIONS:
            raise self.refuse(node, f"{node.id} is a function", f": call it, like {node.id}(x)")
        raise self.refuse(node, f"unknown name {node.id!r}", f"; allowed: {ALLOWED_NAMES}")

    def call(self, node: ast.Call, depth: int) -> Call:
        function = node.func
        if not isinstance(function, ast.Name):
            raise self.refuse(node, f"{self.source(function)} cannot be called", ": only listed functions, like sin(x)")
        name = function.id
        if name not in FUNCTIONS:
            raise self.refuse(node, f"unknown function {name!r}", f"; allowed: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise self.refuse(node, f"{name} takes no keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.refuse(node, f"{name} takes no starred arguments (*)")
        arity = FUNCTIONS[name][0]
        if len(node.args) != arity:
            raise self.refuse(node, f"{name} takes {arity} argument{'s' * (arity > 1)}, got {len(node.args)}")
        if name == "where" and not isinstance(node.args[0], ast.Compare):
            raise self.refuse(node.args[0], "where's first argument must be a comparison",
                              ", like where(x < 0.5, a, b) or where(x != 0, a, b)")
        args = [self.build(arg, depth + 1, condition=(name == "where" and i == 0)) for i, arg in enumerate(node.args)]
        return Call(name, tuple(args))


def _refused(node: ast.AST, source: str) -> tuple[str, str]:
    """What is wrong with a node of a kind that has no place in a function of x, and what to do instead."""
    if isinstance(node, ast.Attribute):
        return f"the attribute .{node.attr} is not allowed", ": no attributes"
    if isinstance(node, (ast.BoolOp, ast.UnaryOp)) and isinstance(node.op, (ast.And, ast.Or, ast.Not)):
        return "and/or/not is not allowed", ": use where(cond, a, b) with a chain like 0 < x < 1, or nest where"
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"the operator {_OTHER_OPERATORS[type(node.op)]} is not allowed", ": only + - * / ** and unary - +"
    if isinstance(node, ast.IfExp):
        return "a if c else b is not allowed", ": use where(c, a, b)"
    kinds = {ast.Subscript: "subscripts", ast.Lambda: "lambdas", ast.JoinedStr: "f-strings", ast.List: "lists",
             ast.Tuple: "tuples", ast.Set: "sets", ast.Dict: "dicts", ast.NamedExpr: ":= assignments",
             ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
             ast.GeneratorExp: "comprehensions", ast.Starred: "starred expressions", ast.Slice: "slices"}
    what = kinds.get(type(node), f"{type(node).__name__} expressions")
    return f"{what} are not allowed ({source})", ": only numbers, x, pi, e, + - * / ** and the listed functions"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the domain, and the values on it -------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def parse_domain(value: Any) -> tuple[float, float]:
    """"LO,HI" or a pair of numbers, as two finite floats with LO < HI (each within ±MAX_VALUE)."""
    try:
        low, high = _two_numbers(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a huge int
        low = high = math.nan
    if not -MAX_VALUE <= low < high <= MAX_VALUE:
        raise ConfigError(f"--domain takes LO,HI with LO < HI, like 0,1 (numbers within ±{MAX_VALUE:g}); "
                          f"got {_short(repr(value))}")
    return low, high


def _two_numbers(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if not all(_DECIMAL.fullmatch(part) for part in parts):  # float() would also take nan, 1_0 and "١"
            raise ValueError(value)
        parts = [float(part) for part in parts]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise TypeError(value)
    if len(parts) != 2 or any(type(part) is bool or not isinstance(part, (int, float)) for part in parts):
        raise ValueError(value)
    return float(parts[0]), float(parts[1])


def _num(value: float) -> str:
    return f"{value:.10g}"


def check_finite(expression: Expression, domain: Any, points: int = 10001) -> None:
    """Raise ConfigError at the first x of an even grid over the domain where the function is NaN, ±inf or larger
    than MAX_VALUE. The grid is low + (high - low) * i / (points - 1), both ends included: on [0, 1] with the default
    points, x is i / 10000 as Python reads the decimal (0.5, 0.3), so a pole there is met, not stepped over. A pole
    between grid points is not seen unless the values near it pass MAX_VALUE."""
    low, high = parse_domain(domain)
    if type(points) is not int or points < 2:
        raise ConfigError(f"check_finite needs at least 2 points, not {points!r}")
    x = low + (high - low) * (np.arange(points) / (points - 1))
    x[-1] = high
    y = expression.evaluate(x)
    bad = ~np.isfinite(y) | (np.abs(y) > MAX_VALUE)
    if bad.any():
        i = int(np.argmax(bad))
        where = f"at x = {_num(x[i])} on the domain [{_num(low)}, {_num(high)}]"
        if np.isfinite(y[i]):
            raise ConfigError(f"{expression.text} is too large to learn {where}: {y[i]:.3g}, more than {MAX_VALUE:g}")
        raise ConfigError(f"{expression.text} is not finite {where}")
