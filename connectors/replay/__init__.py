"""A marketplace that replays a recorded crowd study (LLMFAO format) in-process."""
