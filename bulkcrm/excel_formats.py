"""Excel number formats (ECMA-376 Part 1 §18.8.31): what a numeric cell shows under its format.

Used by the Excel reader (`read_excel`): `shown_numbers` renders a sheet's numeric cells in one
pass (General and zero padding with polars expressions, other formats once per distinct value
and format through `render_number`); `shown_date` says what Excel shows of a date cell (the
`date-cell` warning). Date serials count from 1899-12-30, or 1904-01-01 in a 1904 workbook.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

import polars as pl

_DATE_LETTER = re.compile(r"[ymdhs!]")
"""A letter of a date/time format once `_date_letters` cleaned it (`!`: elapsed `[h]`)."""
_WIDE = Context(prec=400)
"""Decimal context of `_fixed`: room for any float's digits, so quantize never overflows."""


def shown_numbers(nums: pl.DataFrame, codes: list[str], date1904: bool) -> pl.DataFrame:
    """(v, s) pairs of numeric cells -> + `shown` (String), `id_like` (an integer >= 0 under
    General, or `0`, which shows it alike),
    `format` (String: the format code of a cell rendered as a date/time, else null) and `styled`
    (Boolean: an integer its format shows with more than digits, `+`, spaces, dashes, slashes
    and parentheses, which a phone's format adds (`+31 10 555 0707`): `12,345,678`, `2138.00`,
    `$2,138.00`, `213800%`).

    General and pure zero-padding formats (`00000000`) are rendered with polars expressions;
    other formats go through `render_number` once per distinct (value, format)."""
    code_of = {i: c for i, c in enumerate(codes)}
    nums = nums.with_columns(
        pl.col("s").replace_strict(code_of, default="General", return_dtype=pl.String)
        .alias("code"), pl.col("v").cast(pl.Float64, strict=False).alias("x"))
    kinds = {c: _format_kind(c) for c in nums["code"].unique().to_list()}
    nums = nums.with_columns(pl.col("code").replace_strict(kinds, return_dtype=pl.String)
                             .alias("fk"))
    x, integral = pl.col("x"), pl.col("x").round(0) == pl.col("x")
    x15 = x.round_sig_figs(15)  # Excel keeps 15 significant digits
    general = (pl.when(integral & (x.abs() < 1e18))
               .then(x15.cast(pl.Int64, strict=False).cast(pl.String))
               .otherwise(x15.cast(pl.String)))
    pad = pl.col("code").str.len_chars()
    zeros = pl.when(x.abs() < 1e15).then(
        pl.when(x < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        + x15.abs().round(0, mode="half_away_from_zero").cast(pl.Int64, strict=False).cast(pl.String).str.zfill(pad)
    ).otherwise(general)
    other = nums.filter(pl.col("fk").is_in(["other", "date"]), x.is_not_null()).select("v", "s", "code", "x")
    rendered = other.with_columns(pl.Series("r", [
        render_number(v, c, date1904) for v, c in other.select("x", "code").iter_rows()],
        pl.String)).select("v", "s", "r")
    return (nums.join(rendered, on=["v", "s"], how="left")
            .with_columns(pl.when(x.is_null()).then(pl.col("v"))
                          .when(pl.col("fk") == "zeros").then(zeros)
                          .when(pl.col("fk") == "general").then(general)
                          .otherwise(pl.col("r").fill_null(general)).alias("shown"),
                          (((pl.col("fk") == "general") | (pl.col("code").str.strip_chars() == "0"))
                           & integral & (x >= 0)).fill_null(False).alias("id_like"),
                          pl.when((pl.col("fk") == "date") & pl.col("r").is_not_null())
                          .then(pl.col("code")).alias("format"))
            .with_columns(((pl.col("fk") == "other") & integral & pl.col("r").is_not_null()
                           & pl.col("shown").str.contains(r"[^\d+\s\-()/]")).fill_null(False).alias("styled"))
            .select("v", "s", "shown", "id_like", "format", "styled"))


def _format_kind(code: str) -> str:
    """`general`, `zeros` (`00000000`; `0` shows an integer as General does), `date` (a
    date/time format, by its first section) or `other`."""
    c = code.strip()
    if c.lower() in ("general", "@", ""):
        return "general"
    if re.fullmatch(r"0+", c) and len(c) < 16:
        return "zeros"
    return "date" if _DATE_LETTER.search(_date_letters(_sections(c)[0])) else "other"


@lru_cache(maxsize=1024)
def _sections(code: str) -> list[str]:
    out, cur, i = [], "", 0
    while i < len(code):
        ch = code[i]
        if ch == '"':
            j = code.find('"', i + 1)
            j = len(code) if j < 0 else j
            cur, i = cur + code[i:j + 1], j + 1
            continue
        if ch == "\\" and i + 1 < len(code):
            cur, i = cur + code[i:i + 2], i + 2
            continue
        if ch == ";":
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return out + [cur]


@lru_cache(maxsize=1024)
def _tokens(sec: str) -> list[tuple[str, str]]:
    """Split one format section into (kind, text): lit, ph (0 # ?), dot, comma, pct, bad."""
    out, i = [], 0
    while i < len(sec):
        ch = sec[i]
        if ch == '"':
            j = sec.find('"', i + 1)
            j = len(sec) if j < 0 else j
            out.append(("lit", sec[i + 1:j]))
            i = j + 1
            continue
        if ch in "\\_*" and i + 1 < len(sec):
            out.append(("lit", sec[i + 1] if ch == "\\" else " " if ch == "_" else ""))
            i += 2
            continue
        if ch == "[":
            j = sec.find("]", i)
            inner = sec[i + 1:j] if j > 0 else ""
            if inner.startswith("$"):
                out.append(("lit", inner[1:].split("-")[0]))
            elif inner[:1] in "<>=":
                out.append(("bad", inner))
            i = j + 1 if j > 0 else len(sec)
            continue
        if sec[i:i + 7].lower() == "general" or ch in "@/" or (ch in "Ee" and sec[i + 1:i + 2] in "+-"):
            out.append(("bad", ch))
        elif ch in "0#?":
            out.append(("ph", ch))
        elif ch in ".,":
            out.append(("dot" if ch == "." and all(k != "dot" for k, _ in out) else
                        "comma" if ch == "," else "lit", ch))
        elif ch == "%":
            out.append(("pct", "%"))
        else:
            out.append(("lit", ch))
        i += 1
    return out


@lru_cache(maxsize=1024)
def _date_letters(sec: str) -> str:
    """The section with quoted text, escapes and [...] removed (elapsed [h] kept as '!')."""
    s = re.sub(r'"[^"]*"|\\.|_.|\*.', "", sec)
    s = re.sub(r"\[(h+|m+|s+)\]", "!", s, flags=re.I)
    return re.sub(r"\[[^\]]*\]", "", s).lower().replace("general", "")


def render_number(x: float, code: str, date1904: bool = False) -> str | None:
    """Render number `x` as Excel shows it under number format `code` (ECMA-376 §18.8.31).

    Handles zero padding and digit placeholders (`0 # ?`) with literal text in between
    (`+00 00 000 0000`, quoted text, `\\x` escapes, `[$€-413]`), decimals, thousands
    separators, scaling commas, percent, 2-4 sections; date/time formats become ISO 8601 of
    the value held where a date format hides its time of day (`2024-01-31`,
    `2024-01-31T10:15:00` also under `dd/mm/yyyy`; `10:15:00` under a time format; elapsed
    `[h]:mm:ss` -> `25:18:43`).
    Returns None for what it does not handle (scientific, fractions, conditions): the caller
    then shows the plain number.
    """
    secs = _sections(code)
    if x < 0 and len(secs) >= 2:
        sec, val, sign = secs[1], -x, ""
    elif x == 0 and len(secs) >= 3:
        sec, val, sign = secs[2], 0.0, ""
    else:
        sec, val, sign = secs[0], abs(x), "-" if x < 0 else ""
    letters = _date_letters(sec)
    if _DATE_LETTER.search(letters):
        return _render_date(x, letters, date1904)
    toks = _tokens(sec)
    if any(k == "bad" for k, _ in toks):
        return None
    if not any(k == "ph" for k, _ in toks):
        return "".join(t for k, t in toks if k in ("lit", "pct")) or None
    dot = next((i for i, (k, _) in enumerate(toks) if k == "dot"), len(toks))
    int_t, frac_t = toks[:dot], toks[dot + 1:]
    ph_idx = [i for i, (k, _) in enumerate(int_t) if k == "ph"]
    group = any(k == "comma" for k, _ in int_t[ph_idx[0]:ph_idx[-1]]) if ph_idx else False
    scale = sum(1 for k, _ in int_t[ph_idx[-1] + 1:] if k == "comma") if ph_idx else 0
    val = val * 100 ** sum(1 for k, _ in toks if k == "pct") / 1000 ** scale
    frac_ph = [t for k, t in frac_t if k == "ph"]
    ip, _, fp = _fixed(val, len(frac_ph)).partition(".")
    digits = ip.lstrip("0")
    if sign and not (digits or fp.strip("0")):
        sign = ""
    int_txt = _fill_int(int_t, digits, group)
    if dot == len(toks):
        return sign + int_txt
    return sign + int_txt + "." + _fill_frac(frac_t, fp)


def _fixed(val: float, places: int) -> str:
    """`val` (>= 0) with `places` decimals as Excel rounds it: to its 15 significant digits,
    then half away from zero (2.5 -> 3, 0.125 -> 0.13, 2.675 -> 2.68), where Python's format
    rounds the binary value half to even (2, 0.12, 2.67)."""
    exact = Decimal(f"{val:.15g}").quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_WIDE)
    return f"{exact:f}"


def _fill_int(toks: list[tuple[str, str]], digits: str, group: bool) -> str:
    ph = [t for k, t in toks if k == "ph"]
    if not ph:
        return digits + "".join(t for k, t in toks if k in ("lit", "pct"))
    if group:
        zeros = ph.count("0")
        d = digits.rjust(zeros, "0") if zeros else digits
        grouped = f"{int(d):,}".rjust(len(d) + (len(d) - 1) // 3, "0") if d else ""
        first = next(i for i, (k, _) in enumerate(toks) if k == "ph")
        last = max(i for i, (k, _) in enumerate(toks) if k == "ph")
        lit = lambda part: "".join(t for k, t in part if k in ("lit", "pct"))  # noqa: E731
        return lit(toks[:first]) + grouped + lit(toks[last + 1:])
    out, rest, left = [], digits, sum(1 for k, _ in toks if k == "ph")
    for k, t in reversed(toks):
        if k == "ph":
            left -= 1
            if left == 0:
                out.append(rest if rest else {"0": "0", "?": " "}.get(t, ""))
                rest = ""
            elif rest:
                out.append(rest[-1])
                rest = rest[:-1]
            else:
                out.append({"0": "0", "?": " "}.get(t, ""))
        elif k in ("lit", "pct"):
            out.append(t)
    return "".join(reversed(out))


def _fill_frac(toks: list[tuple[str, str]], fp: str) -> str:
    ph = [t for k, t in toks if k == "ph"]
    keep = len(ph)
    while keep and ph[keep - 1] != "0" and fp[keep - 1] == "0":
        keep -= 1
    out, n = [], 0
    for k, t in toks:
        if k == "ph":
            out.append(fp[n] if n < keep else (" " if t == "?" else ""))
            n += 1
        elif k in ("lit", "pct"):
            out.append(t)
    return "".join(out)


def _render_date(x: float, letters: str, date1904: bool) -> str | None:
    if "!" in letters:  # elapsed time [h]:mm:ss
        secs = round(abs(x) * 86400)
        h, rem = divmod(secs, 3600)
        return f"{'-' if x < 0 else ''}{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
    if x < 0:
        return None
    has_time = "h" in letters or "s" in letters
    has_date = "y" in letters or "d" in letters or ("m" in letters and not has_time)
    base = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30 if x >= 61 else 31)
    try:
        dt = base + timedelta(seconds=round(x * 86400))
    except OverflowError:
        return None
    # what the cell holds, whatever its format shows: a date-only format hides a time of day
    # (2024-03-01 09:30 shown as 01/03/2024); a time under a minute is a float's noise, and a
    # serial under 1 is a time alone (no date); a time-only format shows a time (of a sum of times too)
    has_time = has_time or (x >= 1 and (dt.hour, dt.minute) != (0, 0))
    if not has_date:
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%Y-%m-%dT%H:%M:%S" if has_time else "%Y-%m-%d")


_DATE_TOKEN = re.compile(r'"[^"]*"|\\.|_.|\*.|\[[^\]]*\]|am/pm|a/p|y+|m+|d+|h+|s+|.', re.I)
"""One part of a date/time format section: quoted text, an escape, padding, a [...] block,
an AM/PM marker, a run of one date letter, or any other character (shown as is)."""
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def shown_date(text: str, code: str) -> str:
    """What Excel shows of a date/time cell read as `text` (`render_number`'s ISO 8601:
    `2024-03-12`, `2024-03-12T14:05:00`, `14:05:00`) under its number format `code` (ECMA-376
    §18.8.31, the first section; English names): `d-mmm` -> `12-Mar`, `mmm-yy` -> `Jan-50`.

    Returns `text` itself for what it cannot show (elapsed `[h]:mm`, a text that is no ISO date).
    """
    try:
        dt = datetime.fromisoformat(text if "-" in text else f"1899-12-30T{text}")
    except ValueError:
        return text
    sec = _sections(code)[0]
    if "!" in _date_letters(sec):
        return text
    parts = _DATE_TOKEN.findall(sec)
    twelve = any(p.lower() in ("am/pm", "a/p") for p in parts)
    minutes = _minute_parts(parts)
    return "".join(_date_part(p, dt, twelve, i in minutes) for i, p in enumerate(parts))


def _minute_parts(parts: list[str]) -> set[int]:
    """Indexes of the `m` runs among `_DATE_TOKEN` parts that mean minutes: right after an hour
    or right before seconds, other parts aside (as Excel reads `h:mm`, `mm:ss`)."""
    letters = [(i, p[0].lower()) for i, p in enumerate(parts) if p[0].lower() in "ymdhs"]
    return {i for k, (i, c) in enumerate(letters) if c == "m" and (
        k > 0 and letters[k - 1][1] == "h" or k + 1 < len(letters) and letters[k + 1][1] == "s")}


def _date_part(part: str, dt: datetime, twelve: bool, minute: bool) -> str:
    """One `_DATE_TOKEN` of a format shown for `dt` (`minute`: an `m` run that means minutes,
    after an hour or before seconds, as Excel reads it; `twelve`: hours on a 12-hour clock)."""
    first, n = part[0].lower(), len(part)
    hour = (dt.hour % 12 or 12) if twelve else dt.hour
    numbers = {"y": dt.year % 100 if n <= 2 else dt.year, "d": dt.day, "h": hour, "s": dt.second,
               "m": dt.minute if minute else dt.month}
    if part.lower() in ("am/pm", "a/p"):
        noon = ("AM", "PM")[dt.hour >= 12][:2 if n == 5 else 1]
        return noon.lower() if part[0].islower() else noon
    if first == "d" and n >= 3:
        return _DAYS[dt.weekday()][:3 if n == 3 else None]
    if first == "m" and not minute and n >= 3:
        return _MONTHS[dt.month - 1][:{3: 3, 4: None}.get(n, 1)]
    if first in numbers:  # y and yy: two digits, as Excel shows them
        return f"{numbers[first]:0{2 if n >= 2 or first == 'y' else 1}d}"
    if first in "\\_*[":
        return {"\\": part[1:], "_": " "}.get(first, "")
    return part[1:-1] if first == '"' else part
