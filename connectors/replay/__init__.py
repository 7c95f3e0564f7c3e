"""A marketplace that replays a recorded crowd study (LLMFAO format) in-process.

The recording reader is this package's public surface: the LLMFAO demo builds its campaign
inputs from the same recording the connector replays, so both name responses alike.
"""

from crowdloop.connectors.replay.models import (
    Recording,
    RecordingError,
    load_recording,
    response_id,
)

__all__ = ["Recording", "RecordingError", "load_recording", "response_id"]
