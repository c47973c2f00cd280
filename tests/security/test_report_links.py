"""Links in report.html: only http(s), mailto and relative links are drawn, whatever the case of
the scheme or the characters a browser strips before reading it; a folder named like a link
is shown as text. Checked against Chromium's own URL parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from hostile import cli, recipe_file  # noqa: F401  (fixtures)

from nnopt.report.doc import Doc, safe_href

HOSTILE = ["JavaScript:alert(1)", "JAVASCRIPT:alert(1)", "javascript:alert(1)",
           "\x01javascript:alert(1)", "java\x00script:alert(1)", "data:text/html,<b>x</b>",
           "VBScript:msgbox(1)", "//evil.example/x", "/\\evil.example/x", "\\\\evil.example",
           "file:///etc/passwd", "jav&#x09;ascript:alert(1)", "&#106;avascript:alert(1)"]
SAFE = ["https://example.org/a", "HTTP://example.org", "mailto:a@example.org",
        "variants/v00/report.html", "#s-answer", "report.html", "../other/report.html"]


def test_only_http_mailto_and_relative_links_pass():
    assert [h for h in HOSTILE if safe_href(h)] == []
    assert [h for h in SAFE if not safe_href(h)] == []


def _hrefs(html: str) -> list[str]:
    return re.findall(r"<a href='([^']*)'", html)


def test_hostile_links_are_text_in_the_page():
    doc = Doc("t")
    doc.p(" ".join(f"[x{i}]({h})" for i, h in enumerate(HOSTILE + SAFE)))
    page = doc.html()
    assert len(_hrefs(page)) == len(SAFE)
    assert "javascript" not in " ".join(_hrefs(page)).lower()


CHECK = """<script>window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'nnopt-check';
  out.textContent = JSON.stringify([...document.querySelectorAll('a[href]')]
    .filter(a => a.id !== 'nnopt-check').map(a => a.protocol));
  document.body.appendChild(out);
});</script>"""

FOLDERS = ["[a](JavaScript:alert(1))", "[b](JAVASCRIPT:document.title)",
           "[c](data:text", "[d](VbScript:x)", "[e](https:", "[f](mailto:me@example.org)"]


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make browser installs it)")
def test_runs_named_like_links_in_a_real_browser(cli, recipe_file, tmp_path):
    """`nnopt report` of runs whose folder names are Markdown links: in Chromium every link of
    the page resolves to http(s), mailto or the page's own file (relative and anchor links)."""
    run = tmp_path / "run"
    assert cli("run", recipe_file(), "--out", run, "--quiet").code == 0
    dirs = []
    for name in FOLDERS:
        shutil.copytree(run, tmp_path / name)
        dirs.append(tmp_path / name)
    assert cli("report", *dirs, "--out", tmp_path / "cmp").code == 0
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "[a](JavaScript:alert(1))" in html  # the name is shown, as text
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-background-networking",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'<pre id="nnopt-check">(.*?)</pre>', dom)
    assert found, dom[-500:]
    protocols = json.loads(found.group(1).replace("&quot;", '"'))
    assert protocols and set(protocols) <= {"file:", "https:", "http:", "mailto:"}, protocols
    assert "mailto:" in protocols  # an allowed link stays a link
