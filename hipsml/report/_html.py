"""The HTML of hipsml's report pages: figures with summaries, tables and the commands that remake them.

One home for the page shared by ``hipsml report`` (:mod:`hipsml.report`) and ``hipsml demo``:
:func:`render_html` renders :class:`Section` s of :class:`Figure` s as one self-contained page
(inline CSS, no script, relative links only, every text escaped, since ids, labels and channel
names are user text).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "Section", "render_html"]


@dataclass(frozen=True)
class Figure:
    """One picture of the report: its file, copied to ``figures/<name>``, what it shows and how to remake it."""

    name: str
    source: Path
    title: str
    summary: list[str]
    commands: list[str]
    table: tuple[list[str], list[list[str]]] | None = None
    table_id: str | None = None


@dataclass(frozen=True)
class Section:
    """A heading, an introduction and its figures (and links, e.g. to the explorer).

    ``tables`` are ``(id, header, rows)`` shown after the introduction; ``gallery`` is a list of
    ``(image path relative to the page, caption)`` shown in order as an ``<ol id=gallery_id>``.
    """

    key: str
    title: str
    intro: list[str]
    figures: list[Figure]
    links: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    gallery: list[tuple[str, str]] = field(default_factory=list)
    gallery_id: str | None = None


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2430;
       background: #f6f7f9; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 24px 40px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 28px 0 6px; font-size: 21px; border-bottom: 1px solid #d5d9e0; }
.meta { color: #566070; font-size: 14px; margin: 0 0 10px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; background: #fff; }
th, td { border: 1px solid #d5d9e0; padding: 3px 9px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 10px;
         flex: 1 1 480px; min-width: 0; box-sizing: border-box; }
figure.wide { flex-basis: 100%; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto 6px; }
figcaption p { margin: 4px 0; font-size: 14px; }
pre { background: #eef1f5; padding: 6px 9px; border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere;
      font-size: 12.5px; margin: 4px 0; }
#timings td:last-child { text-align: left; }
ol.gallery { display: flex; flex-wrap: wrap; gap: 10px; padding-left: 0; list-style: none; }
ol.gallery li { background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 6px; width: 150px;
                font-size: 12.5px; }
ol.gallery img { width: 100%; image-rendering: pixelated; display: block; }
a.button { display: inline-block; background: #2457a6; color: #fff; padding: 6px 14px; border-radius: 4px;
           text-decoration: none; margin: 4px 0 10px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _commands(commands: list[str]) -> str:
    return "".join(f'<pre class="command">{_e(c)}</pre>' for c in commands)


def _table(header: list[str], rows: list[list[str]], table_id: str | None) -> str:
    ident = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + f"<th>{_e(r[0])}</th>" + "".join(f"<td>{_e(v)}</td>" for v in r[1:]) + "</tr>" for r in rows
    )
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(fig: Figure, wide: bool) -> str:
    text = "".join(f"<p>{_e(p)}</p>" for p in fig.summary)
    table = _table(*fig.table, fig.table_id) if fig.table else ""
    cls = ' class="wide"' if wide else ""
    return (f'<figure id="fig-{_e(Path(fig.name).stem)}"{cls}>'
            f'<img src="figures/{_e(fig.name)}" alt="{_e(fig.title)}"><figcaption><p><b>{_e(fig.title)}</b> '
            f"(figures/{_e(fig.name)})</p>{text}{table}<p>Made again by:</p>{_commands(fig.commands)}"
            "</figcaption></figure>")  # fmt: skip


def render_html(title: str, header: list[str], timings: list[tuple[str, str, str]], sections: list[Section]) -> str:
    """The report page: a title, header lines, a table of the steps' timings and the sections (all escaped).

    Examples
    --------
    >>> page = render_html("a <b>", ["x & y"], [("sky", "1.0", "")], [])
    >>> "a &lt;b&gt;" in page and "x &amp; y" in page
    True
    """
    parts = [(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_CSS}</style></head>"
             f"<body><main><h1>{_e(title)}</h1>")]  # fmt: skip
    parts += [f'<p class="meta">{_e(line)}</p>' for line in header]
    if timings:
        parts.append(_table(["step", "seconds", "note"], [list(t) for t in timings], "timings"))
    for section in sections:
        parts.append(f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2>')
        parts += [f"<p>{_e(p)}</p>" for p in section.intro]
        parts += [f'<a class="button" href="{_e(href)}">{_e(text)}</a>' for text, href in section.links]
        if section.commands:
            parts.append(_commands(section.commands))
        parts += [_table(header, rows, ident) for ident, header, rows in section.tables]
        if section.gallery:
            ident = f' id="{_e(section.gallery_id)}"' if section.gallery_id else ""
            parts.append(
                f'<ol class="gallery"{ident}>'
                + "".join(
                    f'<li><img src="{_e(src)}" alt="{_e(text)}"><span>{_e(text)}</span></li>'
                    for src, text in section.gallery
                )
                + "</ol>"
            )
        wide = len(section.figures) == 1
        parts.append('<div class="figures">' + "".join(_figure(f, wide) for f in section.figures) + "</div></section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
