"""Escaping for text that came from inputs (prompts, model names, reasons) and is shown as
markdown in reports and Prefect artifacts, which the Prefect UI renders as HTML."""

from __future__ import annotations

import html
import re

# Characters markdown gives meaning to; a backslash makes each literal.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def md_escape(text: object) -> str:
    """One line of plain text, safe inside markdown (tables included) and its HTML."""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))
