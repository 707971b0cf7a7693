"""funcapprox/expression.py: a function of x typed by the user, parsed without eval, evaluated with numpy.

The evaluator against numpy for every function and operator; the normalised text; each kind of hostile or malformed
text refused with one clear ConfigError; properties (hypothesis): any text gives an Expression whose values are float64
of the grid's shape, or a ConfigError, and parsing and evaluating open no file, import nothing and run no code.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from helpers.audit import audit_events
from helpers.properties import PROPERTY
from hypothesis import example, given
from hypothesis import strategies as st

from funcapprox.errors import ConfigError, FuncApproxError
from funcapprox.expression import (
    CONSTANTS,
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    Expression,
    check_finite,
    parse_domain,
    parse_expression,
)

GRID = np.linspace(-3, 3, 601)


def values(text: str, x: np.ndarray = GRID) -> np.ndarray:
    return parse_expression(text).evaluate(x)


def assert_clear(exc: BaseException, *words: str) -> None:
    """The project's own error, on one line, holding `words`."""
    assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message.strip() and len(message.splitlines()) == 1, repr(message)
    for word in words:
        assert word in message, (word, message)


def refused(text, *words: str) -> None:
    with pytest.raises(FuncApproxError) as info:
        parse_expression(text)
    assert_clear(info.value, *words)


# =================================================================================================
# 1. Values: every function and operator against numpy
# =================================================================================================

# Each function of FUNCTIONS on a grid where it is defined, against numpy called directly.
UNARY_DOMAINS = {"arcsin": (-1, 1), "arccos": (-1, 1), "log": (0.01, 5), "sqrt": (0, 5), "tan": (-1.5, 1.5)}
ONE_ARGUMENT = [name for name, (arity, _) in FUNCTIONS.items() if arity == 1]


@pytest.mark.parametrize("name", ONE_ARGUMENT)
def test_each_function_of_one_argument_is_numpys(name):
    x = np.linspace(*UNARY_DOMAINS.get(name, (-3.3, 3.3)), 1001)
    expected = getattr(np, name)(x)
    np.testing.assert_array_equal(values(f"{name}(x)", x), expected)
    assert np.isfinite(expected).all()


def test_the_functions_of_several_arguments_are_numpys():
    x = GRID
    np.testing.assert_array_equal(values("minimum(x, 0.5)"), np.minimum(x, 0.5))
    np.testing.assert_array_equal(values("maximum(sin(x), cos(x))"), np.maximum(np.sin(x), np.cos(x)))
    np.testing.assert_array_equal(values("clip(x, -1, 2)"), np.clip(x, -1, 2))
    np.testing.assert_array_equal(values("clip(2*x, -x, x)"), np.clip(2 * x, -x, x))
    np.testing.assert_array_equal(values("where(x < 0, -x, x**2)"), np.where(x < 0, -x, x**2))
    assert {*ONE_ARGUMENT, "minimum", "maximum", "clip", "where"} == set(FUNCTIONS)


@pytest.mark.parametrize("condition, expected", [
    ("0 < x < 1", (0 < GRID) & (GRID < 1)),
    ("-1 <= x <= 1", (-1 <= GRID) & (GRID <= 1)),
    ("x > 2", GRID > 2),
    ("x >= 2", GRID >= 2),
    ("x == 0", GRID == 0),
    ("x != 0", GRID != 0),
    ("-2 < x < 0 <= x", np.zeros_like(GRID, dtype=bool)),
    ("x**2 < 1 + x", GRID**2 < 1 + GRID),
])
def test_where_takes_comparisons_and_chains_of_them(condition, expected):
    np.testing.assert_array_equal(values(f"where({condition}, 1, -1)"), np.where(expected, 1.0, -1.0))


@pytest.mark.parametrize("text, expected", [
    ("-x**2", lambda x: -(x**2)),  # as in Python: ** binds tighter than unary minus
    ("2**-1", lambda x: np.full_like(x, 0.5)),
    ("2**3**2", lambda x: np.full_like(x, 512.0)),  # right-associative
    ("(2**3)**2", lambda x: np.full_like(x, 64.0)),
    ("1 - x - 1", lambda x: (1 - x) - 1),
    ("1 - (x - 1)", lambda x: 2 - x),
    ("8 / x / 2", lambda x: (8 / x) / 2),
    ("1 + 2*x**2 / 4", lambda x: 1 + (2 * x**2) / 4),
    ("--x", lambda x: x),
    ("+x", lambda x: x),
    ("-(x + 1)", lambda x: -(x + 1)),
    ("(-x)**2", lambda x: x**2),
    ("pi", lambda x: np.full_like(x, math.pi)),
    ("e", lambda x: np.full_like(x, math.e)),
    ("e**x", np.exp),
    ("2*pi*x", lambda x: 2 * np.pi * x),
    ("1e-3 * x + 0.5 + .25 + 3.", lambda x: 1e-3 * x + 0.5 + 0.25 + 3.0),
    ("3", lambda x: np.full_like(x, 3.0)),
])
def test_operators_precedence_and_constants_are_pythons(text, expected):
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(values(text), expected(GRID), rtol=1e-14)


def test_the_values_are_float64_of_the_grids_shape_and_never_warn():
    for shape in [(), (7,), (5, 1), (2, 3, 4)]:
        x = np.linspace(0, 1, math.prod(shape)).reshape(shape)
        for text in ["3", "x", "where(x < 0.5, 1, x)", "sin(x) + pi"]:
            y = values(text, x)
            assert y.dtype == np.float64 and y.shape == shape, (text, shape)
    x = np.linspace(-1, 1, 11, dtype=np.float32)
    assert values("x", x).dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for text in ["1/x", "log(x)", "sqrt(x)", "x**1e9", "10**10**10", "exp(1000*x)", "0/0", "arcsin(2*x)"]:
            values(text)


def test_huge_powers_are_float64_at_once_never_python_ints():
    start = time.perf_counter()
    assert np.isinf(values("10**10**10")).all()
    assert np.isinf(values("9**9**9**9**9")).all()
    assert (values("x**1e9", np.array([2.0, 1.0, 0.5])) == [np.inf, 1, 0]).all()
    assert time.perf_counter() - start < 5  # a Python int 10**10**10 would take hours and gigabytes


# =================================================================================================
# 2. The normalised text
# =================================================================================================


@pytest.mark.parametrize("spellings, text", [
    (["sin(6*x)", "sin( 6 * x )", "  sin(6*(x))", "sin(6.0*x)", "sin(\t6*x\n)", "((sin((6)*x)))", "(sin)(6*x)"],
     "sin(6 * x)"),
    (["-x**2", "-(x**2)", "- x ** 2"], "-x ** 2"),
    (["(-x)**2"], "(-x) ** 2"),
    (["2**-1", "2 ** (-1)"], "2 ** -1"),
    (["2**3**2", "2**(3**2)"], "2 ** 3 ** 2"),
    (["(2**3)**2"], "(2 ** 3) ** 2"),
    (["1-(x-1)"], "1 - (x - 1)"),
    (["(1-x)-1", "1-x-1"], "1 - x - 1"),
    (["x/(2*x)"], "x / (2 * x)"),
    (["(x*2)/x"], "x * 2 / x"),
    (["where(0<x<1,x,-x)"], "where(0 < x < 1, x, -x)"),
    (["where((x+1)*2>=x,1,2)"], "where((x + 1) * 2 >= x, 1, 2)"),
    (["clip(x,0,1)+minimum(x,e)*maximum(pi,x)"], "clip(x, 0, 1) + minimum(x, e) * maximum(pi, x)"),
    (["1e-05", "0.00001", "1E-5"], "1e-05"),
    (["1_000", "1000.0", "1e3", "0x3e8"], "1000"),
    (["+x"], "+x"),
])
def test_every_spelling_of_a_formula_gives_one_text(spellings, text):
    for spelling in spellings:
        expression = parse_expression(spelling)
        assert expression.text == str(expression) == text, spelling
        assert parse_expression(expression.text) == expression  # the text means the same tree


def test_expressions_are_immutable_values():
    a, b = parse_expression("sin(6*x)"), parse_expression("sin( 6 * x )")
    assert a == b and hash(a) == hash(b) and isinstance(a, Expression)
    with pytest.raises(AttributeError):
        a.root = b.root


# =================================================================================================
# 3. Hostile and malformed text: one ConfigError saying what and where
# =================================================================================================

ALLOWED_NAMES = "allowed: x, pi, e, sin, cos"


@pytest.mark.parametrize("text, words", [
    ("__import__('os')", ["unknown function '__import__' at column 1", "allowed: sin, cos"]),
    ("().__class__", ["attribute .__class__"]),
    ("().__class__.__mro__[1].__subclasses__()", ["cannot be called", "only listed functions"]),
    ("x.real", ["attribute .real", "column 1"]),
    ("sin(x).real", ["attribute .real"]),
    ("y + 1", ["unknown name 'y' at column 1", ALLOWED_NAMES]),
    ("x + os", ["unknown name 'os' at column 5"]),
    ("sin(", ["syntax error", "'(' was never closed at column 4"]),
    ("  sin(", ["column 6"]),  # columns count in the user's text, spaces and all
    ("x +", ["syntax error", "at column 4"]),
    ("x )", ["syntax error", "column 3"]),
    ("x = 1", ["syntax error"]),
    ("x; 1", ["syntax error"]),
    ("sin(x)(1)", ["sin(x) cannot be called", "column 1"]),
    ("[x][0]", ["subscripts are not allowed", "[x][0]"]),
    ("x[0]", ["subscripts"]),
    ("[x]", ["lists"]),
    ("(x, 1)", ["tuples"]),
    ("{x: 1}", ["dicts"]),
    ("[x for x in x]", ["comprehensions"]),
    ("lambda: 1", ["lambdas are not allowed"]),
    ("(lambda: 1)()", ["cannot be called"]),
    ('"a"', ["a string is not allowed"]),
    ("b'a'", ["bytes is not allowed"]),
    ("f'{x}'", ["f-strings"]),
    ("1j", ["complex number"]),
    ("True", ["True is not allowed"]),
    ("None", ["None is not allowed"]),
    ("...", ["Ellipsis is not allowed"]),
    ("x if x else 1", ["a if c else b", "use where(c, a, b)"]),
    ("x and 1", ["and/or/not", "use where"]),
    ("x or 1", ["and/or/not"]),
    ("not x", ["and/or/not"]),
    ("x // 2", ["operator //"]),
    ("x % 2", ["operator %"]),
    ("~x", ["operator ~"]),
    ("x ^ 2", ["operator ^"]),
    ("x < 1", ["a comparison at column 1 is allowed only as the first argument of where"]),
    ("sin(x < 1)", ["comparison", "column 5"]),
    ("where(x, 1, 2)", ["where's first argument must be a comparison", "column 7", "where(x != 0, a, b)"]),
    ("where(x < 1, x < 2, 1)", ["comparison at column 14"]),
    ("where((x < 1) < 2, 1, 2)", ["comparison"]),
    ("where(x is 1, 1, 2)", ["is and in are not allowed"]),
    ("where(x in x, 1, 2)", ["is and in"]),
    ("sin(x, 2)", ["sin takes 1 argument, got 2", "column 1"]),
    ("sin()", ["sin takes 1 argument, got 0"]),
    ("clip(x, 1)", ["clip takes 3 arguments, got 2"]),
    ("minimum(x)", ["minimum takes 2 arguments, got 1"]),
    ("where(x < 1, 2)", ["where takes 3 arguments"]),
    ("sin(x=1)", ["keyword"]),
    ("sin(*x)", ["starred"]),
    ("sin", ["sin is a function", "like sin(x)"]),
    ("sin + 1", ["sin is a function"]),
    ("(y := 1)", [":= assignments"]),
    ("1e400", ["the number 1e400 is too large", "at most 1e+15"]),
    ("9" * 400, ["too large"]),
    ("2e15 * x", ["the number 2e15 is too large"]),
    ("x + \u03c0", ["character 'π' at column 5", "ASCII"]),
    ("\uff58", ["character"]),  # a fullwidth x: Python would read it as x (NFKC), this module does not
    ("x\x00", ["character '\\x00' at column 2"]),
    ("", ["empty"]),
    ("  \n ", ["empty"]),
    ("(" * 10_000 + "x" + ")" * 10_000, ["characters long", f"at most {MAX_LENGTH}"]),
    ("x" * 100_000, ["100000 characters long"]),
    ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), [f"nests brackets deeper than {MAX_DEPTH}"]),
    ("[" * 300, ["nests brackets deeper"]),
    ("-" * 400 + "x", [f"nests deeper than {MAX_DEPTH} levels"]),
    ("+".join(["x"] * 200), ["nests deeper"]),
    ("await x", ["not allowed"]),
    (None, ["must be a text"]),
    (b"x", ["must be a text"]),
])
def test_hostile_and_malformed_text_is_one_clear_error(text, words):
    refused(text, *words)


def test_near_the_bounds_is_accepted():
    deep = "(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert parse_expression(deep).text == "x"
    long = "+".join(["x"] * MAX_DEPTH)  # a sum of MAX_DEPTH terms: MAX_DEPTH levels
    assert len(long) <= MAX_LENGTH
    np.testing.assert_allclose(values(long), MAX_DEPTH * GRID, rtol=1e-13)
    assert parse_expression("1e15").text == "1000000000000000"
    assert parse_expression(" " * (MAX_LENGTH - 1) + "x").text == "x"


def test_a_deep_nesting_fails_before_pythons_parser_is_asked(monkeypatch):
    """The brackets are counted in the text first: Python's parser never sees a text nested deeper than MAX_DEPTH."""
    import ast

    def parse(*args, **kwargs):
        raise AssertionError("ast.parse was called")

    monkeypatch.setattr(ast, "parse", parse)
    refused("(" * (MAX_DEPTH + 1), "nests brackets deeper")
    refused("x" * (MAX_LENGTH + 1), "characters long")


# =================================================================================================
# 4. Properties: any text is an Expression or a ConfigError, and does nothing else
# =================================================================================================

WATCHED = {"open", "import", "exec", "os.system", "os.exec", "os.posix_spawn", "subprocess.Popen", "socket.connect",
           "ctypes.dlopen", "os.listdir", "os.scandir", "shutil.rmtree", "os.remove"}


@contextmanager
def recorded():
    """The WATCHED events raised inside the block; filled in when the block ends."""
    seen: list[tuple[str, tuple]] = []
    with audit_events() as events:
        yield seen
    seen.extend((event, args) for event, args in events if event in WATCHED)


def test_the_recording_sees_what_it_should():
    """The check itself: an open, an import and an eval during recording are seen."""
    sys.modules.pop("colorsys", None)
    with recorded() as events:
        open(os.devnull).close()
        __import__("colorsys")
        eval("1")
    assert {"open", "import", "exec"} <= {event for event, _ in events}, events


def outcome(text: str):
    """parse + evaluate (+ check_finite), recorded: the Expression or the ConfigError; nothing else may happen."""
    with recorded() as events:
        try:
            expression = parse_expression(text)
            y = expression.evaluate(GRID)
            try:
                check_finite(expression, (-3, 3), points=601)
            except ConfigError as exc:
                assert_clear(exc, "on the domain [-3, 3]")
        except ConfigError as exc:
            assert_clear(exc)
            result = exc
        else:
            assert isinstance(y, np.ndarray) and y.dtype == np.float64 and y.shape == GRID.shape
            assert parse_expression(expression.text) == expression
            result = expression
    assert events == [], events
    return result


ALLOWED_TOKENS = ["x", "pi", "e", "0", "1", "2", "0.5", "1e3", "6", "+", "-", "*", "/", "**", "(", ")", ",", "<",
                  "<=", ">", ">=", "==", "!=", *FUNCTIONS, *CONSTANTS]
FORBIDDEN_TOKENS = ["y", "__import__", "'os'", '"a"', ".", "[", "]", "{", "}", ":", "lambda", "if", "else", "and",
                    "or", "not", "is", "in", "for", "//", "%", "@", "~", "^", "&", "|", "=", ":=", ";", "1j", "1e400",
                    "9" * 30, "__class__", "real", "open", "import", "os", "True", "None", "...", "*", "\\", "\n",
                    "\x00", "#", "π", "f'{x}'", "b'x'", "__builtins__", "eval", "exec", "globals", "np", "math"]
SOUPS = st.lists(st.sampled_from(ALLOWED_TOKENS) | st.sampled_from(FORBIDDEN_TOKENS), max_size=30).flatmap(
    lambda tokens: st.sampled_from(["", " "]).map(lambda sep: sep.join(tokens)))
NICE = st.lists(st.sampled_from(ALLOWED_TOKENS), max_size=30).map(" ".join)  # many of them parse


@PROPERTY
@given(st.text(max_size=60))
@example("(" * 100_000)
@example("-" * MAX_LENGTH)
@example("x" + "**x" * 166)
@example("\ud800")  # a lone surrogate
def test_any_text_is_an_expression_or_a_clear_error(text):
    outcome(text)


@PROPERTY
@given(SOUPS | NICE)
@example("where(0 < x < 1, sin(6 * x), x ** 2)")
@example("().__class__.__mro__[1].__subclasses__()")
@example("__import__('os').system('true')")
@example("open('/etc/passwd')")
def test_any_token_soup_is_an_expression_or_a_clear_error(text):
    outcome(text)


# Valid formulas built from the grammar, each beside its values computed by numpy directly: the oracle. Every
# composite is parenthesised in full, so the oracle needs no precedence (the cases above test it); the normalised
# text drops the parentheses it does not need, and must still mean the same tree.
NUMPY_OPERATORS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power, "<": np.less,
                   "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}
LEAVES = st.sampled_from([("x", lambda x: x), *((text, lambda x, v=value: np.float64(v)) for text, value in [
    ("pi", math.pi), ("e", math.e), ("0", 0.0), ("2", 2.0), ("0.5", 0.5), ("1e3", 1e3), ("6", 6.0)])])


def _formulas(inner):
    def call(name, *args):
        return (f"{name}({', '.join(text for text, _ in args)})",
                lambda x: getattr(np, name)(*(f(x) for _, f in args)))

    def binary(a, op, b):
        return f"({a[0]}) {op} ({b[0]})", lambda x: NUMPY_OPERATORS[op](a[1](x), b[1](x))

    def where(a, op, b, then, otherwise):
        return (f"where(({a[0]}) {op} ({b[0]}), {then[0]}, {otherwise[0]})",
                lambda x: np.where(NUMPY_OPERATORS[op](a[1](x), b[1](x)), then[1](x), otherwise[1](x)))

    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(lambda t: binary(*t)),
        inner.map(lambda a: (f"-({a[0]})", lambda x: np.negative(a[1](x)))),
        st.tuples(st.sampled_from(ONE_ARGUMENT), inner).map(lambda t: call(*t)),
        st.tuples(st.sampled_from(["minimum", "maximum"]), inner, inner).map(lambda t: call(*t)),
        st.tuples(inner, inner, inner).map(lambda t: call("clip", *t)),
        st.tuples(inner, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), inner, inner, inner).map(
            lambda t: where(*t)),
    )


FORMULAS = st.recursive(LEAVES, _formulas, max_leaves=10)


@PROPERTY
@given(FORMULAS)
@example(("(x) ** (x)", lambda x: np.power(x, x)))
def test_valid_formulas_parse_and_evaluate_as_numpy_does(formula):
    text, oracle = formula
    expression = outcome(text)
    assert isinstance(expression, Expression), (text, expression)
    with np.errstate(all="ignore"):
        expected = np.broadcast_to(oracle(GRID), GRID.shape)
    np.testing.assert_array_equal(expression.evaluate(GRID), expected)
    assert parse_expression(expression.text).text == expression.text


def test_the_outcome_check_tells_both_outcomes():
    parsed = [outcome(text) for text in ["sin(x) + 1", "x * x", "x.real", "y", "where(x < 1, 1, 2)"]]
    assert [isinstance(p, Expression) for p in parsed] == [True, True, False, False, True]


# =================================================================================================
# 5. check_finite and parse_domain
# =================================================================================================


@pytest.mark.parametrize("text, domain, words", [
    ("log(x)", (0, 1), ["log(x) is not finite at x = 0 on the domain [0, 1]"]),
    ("1/(x-0.5)", (0, 1), ["1 / (x - 0.5) is not finite at x = 0.5 on the domain [0, 1]"]),
    ("x**1e9", (0, 2), ["is not finite at x = ", "on the domain [0, 2]"]),
    ("10**10**10", (0, 1), ["is not finite at x = 0"]),
    ("sqrt(x)", (-1, 1), ["not finite at x = -1 on the domain [-1, 1]"]),
    ("arcsin(x)", (0, 1.5), ["not finite at x = 1.00005 on the domain [0, 1.5]"]),
    ("0/0", "0,1", ["not finite at x = 0"]),
    ("x**50", (0, 2), ["too large to learn", "more than 1e+12"]),
    ("exp(x)", (0, 100), ["too large to learn at x = 27.64"]),
    ("1/x", (-1, 1), ["not finite at x = 0 "]),
    ("1/(x - 0.3)", (0, 1), ["not finite at x = 0.3 "]),
])
def test_check_finite_names_the_first_bad_x(text, domain, words):
    with pytest.raises(ConfigError) as info:
        check_finite(parse_expression(text), domain)
    assert_clear(info.value, *words)


@pytest.mark.parametrize("text, domain", [
    ("log(x)", (0.001, 1)), ("sin(6*x)", (0, 1)), ("x**2", "0,1"), ("arcsin(x)", (-1, 1)), ("1/(x-2)", (0, 1)),
    ("where(x < 0.5, -1, 1)", (0, 1)), ("exp(x)", (0, 27)), ("sqrt(x)", (0, 1e12)),
])
def test_check_finite_passes_functions_finite_on_the_domain(text, domain):
    assert check_finite(parse_expression(text), domain) is None


def test_check_finite_refuses_a_bad_domain_or_grid():
    expression = parse_expression("x")
    with pytest.raises(ConfigError, match="--domain"):
        check_finite(expression, (1, 0))
    with pytest.raises(ConfigError, match="at least 2 points"):
        check_finite(expression, (0, 1), points=1)


@pytest.mark.parametrize("value, expected", [
    ("0,1", (0.0, 1.0)), (" -1 , 1 ", (-1.0, 1.0)), ("0.5,2e3", (0.5, 2000.0)), (".5,1.", (0.5, 1.0)),
    ((0, 1), (0.0, 1.0)), ([-2.5, 3], (-2.5, 3.0)), ((np.float64(0), 1), (0.0, 1.0)), ("-1e12,1e12", (-1e12, 1e12)),
])
def test_parse_domain_takes_lo_hi(value, expected):
    low, high = parse_domain(value)
    assert (low, high) == expected and type(low) is float and type(high) is float


@pytest.mark.parametrize("value", [
    "1,0", "0,0", "0", "0,1,2", "", ",", "a,b", "nan,1", "0,inf", "-inf,0", "0,1e400", "1_0,20", "\u0661,2",
    "0x1,2", "0;1", (1, 0), (0,), (0, 1, 2), (0, math.nan), (0, math.inf), (True, 2), ("0", "1"), (0, 10**400),
    None, 1, {0: 1}, b"0,1", "0,2e12", (-2e12, 0), "0,1" + "0" * 5000,
])
def test_parse_domain_refuses_anything_else(value):
    with pytest.raises(ConfigError) as info:
        parse_domain(value)
    assert_clear(info.value, "--domain takes LO,HI with LO < HI, like 0,1", "got ")
