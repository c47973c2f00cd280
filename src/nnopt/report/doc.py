"""A report as blocks (headings, paragraphs, lists, tables, figures), rendered to Markdown and
to one self-contained HTML page from the same content. The page is never wider than its window:
tables scroll inside their own box; numbers align right, text left; a table of contents links
every section."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NUMERIC = re.compile(r"^[-+]?(\d|\.\d)")  # a cell that starts like a number aligns right


def anchor(text: str) -> str:
    return "s-" + re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML from the same content."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)  # shown under the title

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def link(self, href: str, text: str) -> str:
        """A relative link as Markdown (HTML renders Markdown links in cells and text)."""
        return f"[{text}]({href})"

    def headings(self) -> list[str]:
        return [v for k, v in self.blocks if k == "h2"]

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        if self.meta:
            out += [" · ".join(f"**{k}**: {v}" for k, v in self.meta), ""]
        heads = self.headings()
        if len(heads) > 2:
            out += ["Contents: " + " · ".join(f"[{h}](#{anchor(h)})" for h in heads), ""]
        for kind, val in self.blocks:
            if kind == "h2":
                out += [f'<a id="{anchor(val)}"></a>', f"## {val}", ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "ul":
                out += [f"- {item}" for item in val] + [""]
            elif kind == "table":
                header, rows = val
                out.append("| " + " | ".join(h.replace("|", "\\|") for h in header) + " |")
                out.append("|" + "|".join("---:" if _numeric_column(rows, i) else "---"
                                          for i in range(len(header))) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                path, caption = val
                out += [f"![{caption}]({path.relative_to(base).as_posix()})", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                 f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
                 f"<title>{e(self.title)}</title><style>{CSS}</style></head><body>"
                 f"<h1>{e(self.title)}</h1>"]
        if self.meta:
            parts.append("<p class='meta'>" + " · ".join(
                f"<b>{e(k)}</b>: {_inline(v)}" for k, v in self.meta) + "</p>")
        heads = self.headings()
        if len(heads) > 2:
            parts.append("<nav class='toc'><b>Contents</b>: " + " · ".join(
                f"<a href='#{anchor(h)}'>{e(h)}</a>" for h in heads) + "</nav>")
        for kind, val in self.blocks:
            if kind == "h2":
                parts.append(f"<h2 id='{anchor(val)}'>{e(val)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{_inline(val)}</p>")
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in val) + "</ul>")
            elif kind == "table":
                header, rows = val
                num = [_numeric_column(rows, i) for i in range(len(header))]
                cls = [" class='n'" if n else "" for n in num]
                parts.append("<div class='scroll'><table><thead><tr>" + "".join(
                    f"<th{c}>{e(h)}</th>" for h, c in zip(header, cls)) + "</tr></thead><tbody>")
                parts += ["<tr>" + "".join(f"<td{c}>{_inline(v)}</td>" for v, c in zip(r, cls))
                          + "</tr>" for r in rows]
                parts.append("</tbody></table></div>")
            elif kind == "figure":
                path, caption = val
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(caption)}'>"
                             f"<figcaption>{e(caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """Escaped text with Markdown links to relative files or anchors, and **bold**."""
    out = html.escape(text, quote=False)
    out = BOLD.sub(r"<b>\1</b>", out)

    def link(m: re.Match) -> str:
        href = html.unescape(m.group(2))  # the text was escaped above; the link is checked raw
        if not safe_href(href):
            return m.group(0)  # shown as text, never a link
        return f"<a href='{html.escape(href, quote=True)}'>{m.group(1)}</a>"

    return LINK.sub(link, out)


SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
SAFE_SCHEMES = ("http", "https", "mailto")


def safe_href(href: str) -> bool:
    """Whether a link may be drawn: http(s), mailto or a relative path or anchor. Schemes are
    compared as browsers read them, without regard to case; a control character, white space
    or a backslash anywhere refuses the link (browsers strip some of them before reading the
    scheme, and read '\\' as '/'), and so does '//' (another host)."""
    if not href or any(ord(c) < 0x21 or c in "\\\x7f" for c in href):
        return False
    m = SCHEME.match(href)
    if m:
        return m.group(1).lower() in SAFE_SCHEMES
    return not href.startswith("//") and ":" not in href.split("/", 1)[0]


def _numeric_column(rows: list[list[str]], i: int) -> bool:
    cells = [r[i] for r in rows if i < len(r) and r[i] not in ("-", "")]
    return bool(cells) and all(NUMERIC.match(c) for c in cells)


CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;"
       "padding:0 16px;color:#222;line-height:1.4}"
       "h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
       ".meta{color:#555;font-size:13px}.toc{font-size:13px;margin:.5em 0 1em}"
       ".scroll{overflow-x:auto;max-width:100%;margin:.6em 0}"
       "table{border-collapse:collapse;font-size:13px}"
       "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
       "th.n,td.n{text-align:right;white-space:nowrap}th{background:#f3f3f3}"
       "img{max-width:100%;height:auto}figcaption{color:#555;font-size:13px}"
       "li{margin:.25em 0}")
