"""The one sandboxed Jinja environment used for message templates and rule expressions.

Marketers learn one language: `{{ order.items[0].name }}` in a template and
`order.amount >= 50` in a rule are evaluated the same way. Missing values fail loudly
(StrictUndefined): a message is never sent with an empty name."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment

from engine.budget import OverBudget, limited
from engine.config.textfile import NotUtf8, decode
from engine.contacts import mask_phone
from engine.durations import parse_duration
from engine.errors import ExpressionError, TemplateError
from engine.money import format_money
from engine.rules.fields import Fields

CONTEXT_NAMES = ("customer", "order", "event", "data", "shop", "now")
MAX_NUMBER = 10 ** 15  # the largest number an expression may write (as intake accepts in events)
EVALUATION_SECONDS = 1.0  # the time budget of one condition or one message's template (README "Limits")
EXPRESSION_NAMES = ("customer", "order", "event", "data", "now", "shop")
SMS_SINGLE, SMS_PART = 70, 67


class Record:
    """A read-only view of a dict with attribute access: `order.items[0].name`.

    A key that is absent or None is undefined, so StrictUndefined reports it (use
    `| default('亲')` or `is defined` in templates). `extra` holds fields looked up
    after the dict's own (custom fields carried by events); times are shown in `tz`."""

    __slots__ = ("_d", "_path", "_extra", "_tz")

    def __init__(self, data: dict, path: str, extra: dict | None = None, tz: ZoneInfo | None = None):
        self._d = data
        self._path = path
        self._extra = extra
        self._tz = tz

    def _lookup(self, name: str) -> Any:
        value = self._d.get(name)
        if value is None and self._extra is not None:
            value = self._extra.get(name)
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or (self._extra is not None and name == "attrs"):
            raise AttributeError(name)
        value = self._lookup(name)
        if value is None:
            raise AttributeError(name)
        if isinstance(value, datetime):
            return value.astimezone(self._tz) if self._tz is not None else value
        if isinstance(value, (dict, list)):
            return wrap(value, f"{self._path}.{name}", self._tz)
        return value

    def __getitem__(self, name):
        try:
            return self.__getattr__(name)
        except AttributeError:
            raise KeyError(name) from None

    def __contains__(self, name) -> bool:
        return self._lookup(name) is not None

    def __bool__(self) -> bool:
        return bool(self._d)

    def __eq__(self, other) -> bool:
        return isinstance(other, Record) and other._d == self._d and other._extra == self._extra

    __hash__ = None

    def __repr__(self) -> str:
        return f"<{self._path}>"


def wrap(value: Any, path: str, tz: ZoneInfo | None = None) -> Any:
    if isinstance(value, dict):
        return Record(value, path, tz=tz)
    if isinstance(value, list):
        return [wrap(v, f"{path}[{i}]", tz) for i, v in enumerate(value)]
    return value


class Scope(dict):
    """The names an expression sees, plus the Jinja runtime context built from them once
    and shared by every expression evaluated on this scope."""

    __slots__ = ("_runtime",)

    def runtime(self, env: jinja2.Environment) -> jinja2.runtime.Context:
        runtime = getattr(self, "_runtime", None)
        if runtime is None:
            runtime = self._runtime = _runtime_context(env, self)
        return runtime


def _runtime_context(env: jinja2.Environment, names: dict) -> jinja2.runtime.Context:
    """What Template.new_context builds, without its per-call copies (8 µs -> 1.5 µs)."""
    return jinja2.runtime.Context(env, {**env.globals, **names}, None, {}, globals=env.globals)


class _Undefined(jinja2.StrictUndefined):
    """A value that is not there (`order.rating` before a review, `customer.birthday` not
    given). Printed, iterated or computed with, it fails that one message with a line
    naming it, as the marketer wrote it. In a condition it is absent: false, equal to
    nothing but none, never greater or less than anything, holding nothing; so
    `order.rating == 'bad'` is false before a review and `not customer.birthday` is true.
    (Misspelt and unknown fields never get this far: `check` refuses them.)"""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other) -> bool:
        return other is None or isinstance(other, jinja2.Undefined)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    def __lt__(self, other) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __contains__(self, item) -> bool:
        return False

    def __hash__(self) -> int:
        return id(type(self))

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if self._undefined_hint:  # e.g. the sandbox refusing an unsafe attribute
            return self._undefined_hint
        if isinstance(obj, Record) and not obj._d and not obj._extra:
            return f"{obj._path}.{self._undefined_name} is missing: this message has no {obj._path}"
        if isinstance(obj, Record):
            return f"{obj._path}.{self._undefined_name} is missing (add | default('...') or check 'is defined')"
        if self._undefined_name is not None and obj is jinja2.utils.missing:
            return f"{self._undefined_name} is not defined; available: {', '.join(CONTEXT_NAMES)}"
        return super()._undefined_message


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with a fast path for Records: a Record exposes only the values of its
    dict (data from events, the store and config.yaml), never attributes, methods or
    names starting with '_', so the sandbox's per-access safety checks have nothing to
    find there. Every other object still goes through them."""

    # Bounds on what one step may build, so that neither `check` (Jinja folds constants
    # when it compiles) nor a message can take the machine's memory: texts and lists of
    # at most MAX_SIZE items, powers of at most MAX_POWER_BITS bits, padding and widths
    # of at most MAX_WIDTH. (A time budget covers the rest: engine.budget.)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SIZE:
                    raise SecurityError(f"repeating that would make {len(seq) * n:,} items; at most {MAX_SIZE:,}")
        elif operator == "**":
            if (isinstance(left, (int, float)) and isinstance(right, (int, float)) and abs(left) > 1
                    and right * math.log2(abs(left)) > MAX_POWER_BITS):
                raise SecurityError("a power that large is not allowed")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                    and len(left) + len(right) > MAX_SIZE:
                raise SecurityError(f"joining those would make more than {MAX_SIZE:,} items")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        if getattr(__obj, "__self__", None).__class__ is str and getattr(__obj, "__name__", "") in _PADDING:
            if __obj.__name__ in ("format", "format_map"):
                _check_widths(__obj.__self__)
            elif any(isinstance(a, int) and a > MAX_WIDTH for a in args):
                raise SecurityError(f"str.{__obj.__name__} wider than {MAX_WIDTH:,} characters is not allowed")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # '{:>999999999}'.format(x): the format string is known here
            _check_widths(value.__self__)
        return wrapped

    def getattr(self, obj, attribute):
        # Records (and their subclasses, such as the customer's) are the engine's own: read
        # their public fields directly instead of through the sandbox's generic checks
        if isinstance(obj, Record) and type(attribute) is str and not attribute.startswith("_"):
            try:
                return obj.__getattr__(attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


MAX_SIZE = 100_000  # characters of a text, items of a list, built in one step
MAX_WIDTH = 1_000  # padding and widths: center, indent, ljust, '%10s'
MAX_POWER_BITS = 4_096
_PADDING = ("center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map")
_WIDTH = re.compile(r"[%:][^a-zA-Z%{}]*?(\d{4,})")


def _check_widths(fmt: str) -> None:
    """Refuse a %-format or str.format spec that pads to more than MAX_WIDTH."""
    for width in _WIDTH.findall(fmt):
        if int(width) > MAX_WIDTH:
            raise SecurityError(f"a width of {int(width):,} characters is not allowed (at most {MAX_WIDTH:,})")


def _capped(filter_func, name: str, *positions: int):
    """A builtin filter whose width arguments (by position after the value) are capped."""
    def capped(value, *args, **kwargs):
        for i in positions:
            if i < len(args) and isinstance(args[i], int) and args[i] > MAX_WIDTH:
                raise SecurityError(f"{name} wider than {MAX_WIDTH:,} characters is not allowed")
        if isinstance(kwargs.get("width"), int) and kwargs["width"] > MAX_WIDTH:
            raise SecurityError(f"{name} wider than {MAX_WIDTH:,} characters is not allowed")
        return filter_func(value, *args, **kwargs)
    capped.__name__ = name
    return capped


class _Utf8Loader(jinja2.FileSystemLoader):
    """Templates are UTF-8 (a byte order mark is accepted); another encoding is one clear
    error (engine.textfile), not a UnicodeDecodeError from deep inside Jinja."""

    def get_source(self, environment, template):
        pieces = split_template_path(template)
        for folder in self.searchpath:
            path = os.path.join(folder, *pieces)
            if os.path.isfile(path):
                break
        else:
            raise jinja2.TemplateNotFound(template)
        with open(path, "rb") as fh:
            contents = decode(fh.read())
        mtime = os.path.getmtime(path)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(path) == mtime
            except OSError:
                return False

        return contents, os.path.normpath(path), uptodate


_CONTAINS = re.compile(r"""([\w.\[\]'"]+)\s+contains\s+([\w.\[\]'"]+)""")


def _syntax_reason(source: str, reason: str) -> str:
    """Jinja's syntax error, with the fix for what marketers write from other languages."""
    contains = _CONTAINS.search(source)
    if contains:
        return f"`contains` is not a word of expressions; write `{contains.group(2)} in {contains.group(1)}`"
    for written, meant in (("&&", "and"), ("||", "or"), ("===", "==")):
        if written in source:
            return f"{reason}; write `{meant}` instead of `{written}`"
    if re.search(r"(?<![=!<>])=(?!=)", source):
        return f"{reason}; to compare, write == (two equal signs)"
    if re.search(r"!(?!=)", source):
        return f"{reason}; write `not` instead of `!`"
    return reason


def _sized(filter_func, name: str):
    """A builtin filter whose result is refused beyond MAX_SIZE (a join of 100,000 texts,
    the list of a long text's characters)."""
    def sized(*args, **kwargs):
        if name == "list" and args and isinstance(args[-1], str) and len(args[-1]) > MAX_SIZE:
            raise SecurityError(f"a list of more than {MAX_SIZE:,} items is not allowed")
        result = filter_func(*args, **kwargs)
        if isinstance(result, (str, list)) and len(result) > MAX_SIZE:
            raise SecurityError(f"{name} would make more than {MAX_SIZE:,} items; that is not allowed")
        return result
    for attribute in ("jinja_pass_arg",):  # join takes the eval context: keep how Jinja passes it
        if hasattr(filter_func, attribute):
            setattr(sized, attribute, getattr(filter_func, attribute))
    sized.__name__ = name
    return sized


def _format(value, *args, **kwargs) -> str:
    """The `format` filter ('%s, %s' | format(a, b)), with its widths capped."""
    _check_widths(str(value))
    return jinja2.filters.do_format(value, *args, **kwargs)


def _line_of(exc: Exception, tmpl: jinja2.Template) -> int | None:
    """The template line where rendering failed: Jinja's traceback has frames in the
    template's own file and lines."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tmpl.filename is not None and tb.tb_frame.f_code.co_filename == tmpl.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _to_datetime(value, tz: ZoneInfo) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value.astimezone(tz)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    raise TypeError(f"not a time: {value!r}")


def sms_segments(text: str, single: int = SMS_SINGLE, part: int = SMS_PART) -> int:
    """Billed SMS segments, counting characters (not bytes)."""
    n = len(text)
    return 1 if n <= single else math.ceil(n / part)


class Templates:
    """Loads, validates and renders templates; compiles rule expressions."""

    def __init__(self, folder: Path | None, tz: ZoneInfo, shop: dict | None = None):
        self.folder = folder
        self.tz = tz
        self.shop = shop or {}
        loader = _Utf8Loader(str(folder)) if folder else None
        env = _Sandbox(loader=loader, undefined=_Undefined, autoescape=False,
                       keep_trailing_newline=False, auto_reload=False, cache_size=-1)
        del env.globals["lipsum"]  # a random-text generator: nothing a message needs, and unbounded
        for name in ("center", "indent", "wordwrap", "truncate"):
            env.filters[name] = _capped(env.filters[name], name, 0)
        env.filters["format"] = _format
        env.filters["join"] = _sized(env.filters["join"], "join")
        env.filters["list"] = _sized(env.filters["list"], "list")
        env.filters["money"] = self._money
        env.filters["date"] = self._date
        env.filters["mask_phone"] = mask_phone
        env.globals["datetime"] = self._datetime
        env.globals["duration"] = parse_duration
        env.globals["segment"] = self._segment
        self.env = env
        self._cache: dict[str, jinja2.Template] = {}
        self.segments: dict[str, Callable[[dict], Any]] = {}
        self.segment_sources: dict[str, str] = {}  # name -> condition as written
        self.segment_places: dict[str, str] = {}  # name -> where it is defined (config.yaml, rules/x.yaml:3)
        self.config_segments: dict[str, str] = {}  # config.yaml's; the rules files' are added at each load
        self.fields = Fields(shop=tuple(self.shop))  # what rules and templates may read (config.yaml `fields:`)

    def parse_expression(self, source: str) -> jinja2.nodes.Expr:
        """The syntax tree of an expression, parsed by this project's environment (the
        sweeps translate part of a broadcast's `if:` to SQL from it)."""
        return self.env.parse("{{ " + source + " }}").body[0].nodes[0]

    def define_segments(self, segments: dict[str, str], places: dict[str, str] | None = None) -> None:
        """Named conditions usable in any expression as segment('name') (config.yaml or a
        rules file's `segments:`; checked there for syntax). `places`: where each is written."""
        self.segment_places = dict(places or {})
        self.segment_sources = dict(segments)
        self.segments = {name: self.compile_expression(source) for name, source in segments.items()}

    # filters and functions ---------------------------------------------------------
    def _money(self, value, symbol: str | None = None) -> str:
        symbol = symbol if symbol is not None else self.shop.get("currency_symbol", "¥")
        return format_money(value, symbol)

    def _date(self, value, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return _to_datetime(value, self.tz).strftime(fmt)

    def _datetime(self, value) -> datetime:
        return _to_datetime(value, self.tz)

    @jinja2.pass_context
    def _segment(self, context, name) -> bool:
        evaluate = self.segments.get(name)
        if evaluate is None:
            raise ValueError(f"unknown segment {name!r}; segments defined: {', '.join(self.segments) or '(none)'}")
        return bool(evaluate(context.get_all()))

    # templates ---------------------------------------------------------------------
    @functools.cached_property
    def fingerprints(self) -> dict[str, str]:
        """Each template file's name -> a digest of its bytes, as they were when first asked
        (a reload tells which templates changed)."""
        if self.folder is None or not self.folder.is_dir():
            return {}
        out = {}
        for path in sorted(self.folder.glob("*.j2")):
            try:
                out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                out[path.name] = "unreadable"
        return out

    def exists(self, name: str) -> bool:
        return self.folder is not None and (self.folder / name).is_file()

    def names(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.glob("*.j2"))

    def undeclared(self, name: str) -> set[str]:
        """Variables a template uses that the context does not provide."""
        source = self.source(name)
        used = meta.find_undeclared_variables(self.env.parse(source))
        return used - set(CONTEXT_NAMES) - set(self.env.globals)

    def source(self, name: str) -> str:
        """A template's text; TemplateError when it is missing, unreadable or not UTF-8."""
        try:
            return self.env.loader.get_source(self.env, name)[0]
        except jinja2.TemplateNotFound:
            raise TemplateError(name, "template file not found") from None
        except (NotUtf8, OSError) as exc:
            raise TemplateError(name, _unreadable(exc)) from None

    def get(self, name: str) -> jinja2.Template:
        tmpl = self._cache.get(name)
        if tmpl is None:
            try:
                tmpl = self.env.get_template(name)
            except jinja2.TemplateNotFound:
                raise TemplateError(name, "template file not found") from None
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(name, f"line {exc.lineno}: {exc.message}") from None
            except (NotUtf8, OSError) as exc:
                raise TemplateError(name, _unreadable(exc)) from None
            self._cache[name] = tmpl
        return tmpl

    def render(self, name: str, context: dict[str, Any]) -> str:
        tmpl = self.get(name)
        try:
            with limited(EVALUATION_SECONDS):
                return tmpl.render(context).strip()
        except OverBudget:
            raise TemplateError(name, f"took too long to render (over {EVALUATION_SECONDS:g} s); simplify it") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(name, exc.message or str(exc), _line_of(exc, tmpl)) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(name, f"not allowed: {exc}", _line_of(exc, tmpl)) from None
        except Exception as exc:  # a filter given a bad value, a division by zero...
            raise TemplateError(name, f"{type(exc).__name__}: {exc}", _line_of(exc, tmpl)) from None

    # fields ------------------------------------------------------------------------
    def unknown_fields(self, source: str) -> list[str]:
        """The attributes an expression reads that no object has (engine.rules.fields)."""
        return [message for _, message in self.fields.unknown(self.env.parse("{{ " + source + " }}"))]

    def unknown_template_fields(self, name: str) -> list[tuple[int, str]]:
        """(line, message) for each attribute a template reads that no object has."""
        return self.fields.unknown(self.env.parse(self.source(name)))

    # expressions -------------------------------------------------------------------
    def compile_expression(self, source: str) -> Callable[[dict], Any]:
        """Compile once; the returned function raises ExpressionError when evaluation fails.

        It accepts a plain dict, or a Scope: a context whose Jinja runtime context is made
        once and shared by every expression evaluated on it (most of an evaluation's cost)."""
        try:
            template = self.env.compile_expression(source, undefined_to_none=False)._template
        except jinja2.TemplateSyntaxError as exc:
            raise ExpressionError(source, _syntax_reason(source, exc.message or "syntax error")) from None
        ast = self.env.parse("{{ " + source + " }}")
        for const in ast.find_all(jinja2.nodes.Const):
            value = const.value
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not abs(value) <= MAX_NUMBER:
                raise ExpressionError(source, f"the number {str(value)[:30]} is beyond ±10^15, more than any "
                                              "order, count or day can be")
        used = meta.find_undeclared_variables(ast)
        unknown = used - set(EXPRESSION_NAMES) - set(self.env.globals)
        if unknown:
            raise ExpressionError(source, f"unknown name {sorted(unknown)[0]!r}; "
                                          f"expressions can use {', '.join(EXPRESSION_NAMES)}")
        render = template.root_render_func
        env = self.env

        def evaluate(context: dict) -> Any:
            try:
                with limited(EVALUATION_SECONDS):
                    runtime = context.runtime(env) if isinstance(context, Scope) else _runtime_context(env, context)
                    for _ in render(runtime):
                        pass
                    value = runtime.vars["result"]
                    if isinstance(value, jinja2.Undefined):
                        value._fail_with_undefined_error()
                    return value
            except OverBudget:
                raise ExpressionError(source, f"took too long (over {EVALUATION_SECONDS:g} s); simplify it") from None
            except jinja2.UndefinedError as exc:
                raise ExpressionError(source, exc.message or str(exc)) from None
            except Exception as exc:
                raise ExpressionError(source, f"{type(exc).__name__}: {exc}") from None

        return evaluate

