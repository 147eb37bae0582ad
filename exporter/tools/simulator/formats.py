"""Which page each `--page-format` serves: one PageTemplate subclass per engine format.

Adding an engine's format is one module beside vllm_page.py, its template under
templates/, and one line here.
"""

from __future__ import annotations

from .llamacpp_page import LlamaCppPage
from .lmdeploy_page import LmdeployPage
from .page import PageTemplate
from .sglang_page import SglangPage
from .tgi_page import TgiPage
from .triton_page import TritonPage
from .vllm_page import VllmPage, VllmV0Page

PAGE_FORMATS: dict[str, type[PageTemplate]] = {
    "v1": VllmPage,
    "v0": VllmV0Page,
    "sglang": SglangPage,
    "llamacpp": LlamaCppPage,
    "tgi": TgiPage,
    "lmdeploy": LmdeployPage,
    "triton": TritonPage,
}
"""`v1`: vLLM 0.32 (V1 engine); `v0`: vLLM 0.6.6 (V0 engine); `sglang`: SGLang 0.5.23;
`llamacpp`: llama.cpp `llama-server`; `tgi`: Hugging Face TGI 3.3.7; `lmdeploy`:
LMDeploy 0.18; `triton`: Triton with the TensorRT-LLM backend 0.18."""


def page_template(page_format: str) -> PageTemplate:
    """The parsed template of a page format; ValueError naming the known ones."""
    if page_format not in PAGE_FORMATS:
        raise ValueError(
            f"unknown page format {page_format!r}; choose one of {', '.join(PAGE_FORMATS)}"
        )
    return PAGE_FORMATS[page_format].load()
