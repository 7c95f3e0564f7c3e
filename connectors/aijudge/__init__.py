"""An AI judge served as a marketplace: pairwise comparisons answered by an
OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama)."""
