"""Every connector's credentials block type, for one `prefect block register -m crowdloop.blocks`
(Prefect registers each Block class found in the module), after which the blocks can be
created in the UI (Blocks → +) and named in a campaign's `connector.credentials_block`."""

from crowdloop.connectors.aijudge.credentials import AIJudgeCredentials
from crowdloop.connectors.labelstudio.credentials import LabelStudioCredentials
from crowdloop.connectors.prolific.credentials import ProlificCredentials
from crowdloop.connectors.scale.credentials import ScaleCredentials
from crowdloop.connectors.simulator.credentials import SimulatorCredentials
from crowdloop.connectors.toloka.credentials import TolokaCredentials

__all__ = [
    "AIJudgeCredentials",
    "LabelStudioCredentials",
    "ProlificCredentials",
    "ScaleCredentials",
    "SimulatorCredentials",
    "TolokaCredentials",
]
