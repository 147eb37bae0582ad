"""Which page each `--page-format` serves: one PageTemplate subclass per engine format.

Adding an engine's format is one module beside vllm_page.py, its template under
templates/, and one line here.
"""

from __future__ import annotations

from .llamacpp_page import LlamaCppPage
from .page import PageTemplate
from .tgi_page import TgiPage
from .vllm_page import VllmPage, VllmV0Page

PAGE_FORMATS: dict[str, type[PageTemplate]] = {
    "v1": VllmPage,
    "v0": VllmV0Page,
    "llamacpp": LlamaCppPage,
    "tgi": TgiPage,
}
"""`v1`: vLLM 0.32 (V1 engine); `v0`: vLLM 0.6.6 (V0 engine); `llamacpp`: llama.cpp
`llama-server`; `tgi`: Hugging Face TGI 3.3.7."""


def page_template(page_format: str) -> PageTemplate:
    """The parsed template of a page format; ValueError naming the known ones."""
    if page_format not in PAGE_FORMATS:
        raise ValueError(
            f"unknown page format {page_format!r}; choose one of {', '.join(PAGE_FORMATS)}"
        )
    return PAGE_FORMATS[page_format].load()
