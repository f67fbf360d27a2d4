"""The HTML body: sanitized for display (nh3), and as plain text when there is no text part."""

from __future__ import annotations

import html as html_lib
import re

import nh3

_ALLOWED_TAGS = {
    "a", "abbr", "address", "b", "big", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
    "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
_CELL_ATTRS = {"colspan", "rowspan", "width", "height", "align", "valign", "bgcolor", "nowrap"}
# No "style", "background", "srcset", "class": each can load remote content or fight our CSS.
_ALLOWED_ATTRS = {
    "*": {"title", "dir", "lang"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border", "align"},
    "table": {"width", "border", "cellpadding", "cellspacing", "align", "bgcolor", "summary"},
    "td": _CELL_ATTRS,
    "th": _CELL_ATTRS,
    "tr": {"align", "valign", "bgcolor"},
    "col": {"span", "width", "align", "valign"},
    "colgroup": {"span", "width", "align", "valign"},
    "font": {"color", "size", "face"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "p": {"align"},
    "div": {"align"},
    "h1": {"align"}, "h2": {"align"}, "h3": {"align"},
    "h4": {"align"}, "h5": {"align"}, "h6": {"align"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}  # fmt: skip
# These are dropped with their content: their text is code or fallback noise, not mail text.
_DROP_WITH_CONTENT = {
    "script", "style", "title", "head", "iframe", "frame", "frameset", "object", "embed",
    "applet", "noembed", "noframes", "template", "svg", "math", "select", "textarea",
}  # fmt: skip
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_INLINE_IMAGE_PREFIXES = ("data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp")
_MAX_DATA_IMAGE = 64 * 1024  # bigger inline data images are more likely abuse than a logo


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Keep only safe link targets and local images (cid:, small data:image)."""
    if attr == "href" or attr == "cite":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if attr == "src":
        low = value.strip().lower()
        if low.startswith("cid:"):
            return value.strip()
        if low.startswith(_INLINE_IMAGE_PREFIXES) and len(value) <= _MAX_DATA_IMAGE:
            return value.strip()
        return None  # remote (or relative, which the browser would make remote): blocked
    return value


_HTML_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ALLOWED_ATTRS,
    attribute_filter=_attribute_filter,
    url_schemes={"http", "https", "mailto", "cid", "data"},
    link_rel="noopener noreferrer",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)
_TEXT_CLEANER = nh3.Cleaner(tags=set(), clean_content_tags=_DROP_WITH_CONTENT, attributes={})
# Applied only up to the last ">" (see html_to_text): there, "[^>]*>" from a tag start always
# matches at the next ">" and the text it scanned is consumed, so each character is scanned
# once. After the last ">" it could never match, yet every "<br" there would rescan the rest:
# 160 KB of "<br " without ">" took 9 s, quadratic in the length.
_BREAK_TAG_RE = re.compile(
    r"<\s*(?:br|/?p|/?div|/?tr|/?li|/?h[1-6]|/?table|/?blockquote|/?pre|hr)\b[^>]*>", re.I
)
_BLANK_LINES_RE = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_SPACES_RE = re.compile(r"[ \t\xa0]+")


def sanitize_html(html: str) -> str:
    """Sanitize mail HTML for display: no scripts, no styles, no remote content."""
    return _HTML_CLEANER.clean(html)


def html_to_text(html: str) -> str:
    """Readable plain text from HTML, for mails that have no text/plain part."""
    end = html.rfind(">") + 1  # no break tag ends after it; see _BREAK_TAG_RE
    text = _BREAK_TAG_RE.sub("\n", html[:end]) + html[end:]
    text = html_lib.unescape(_TEXT_CLEANER.clean(text))
    text = _SPACES_RE.sub(" ", text)
    text = _BLANK_LINES_RE.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
