"""Model providers: the OpenAI-compatible wire format (sans-IO) and its httpx shell."""

from __future__ import annotations
