"""lid-dask: spoken language identification over audio archives."""

from lid_dask.consensus import ConsensusConfig
from lid_dask.engine import Identifier, identify
from lid_dask.errors import AudioError, ErrorKind
from lid_dask.results import FileResult, ModelVerdict
from lid_dask.windows import WindowPlan

__all__ = [
    "AudioError",
    "ConsensusConfig",
    "ErrorKind",
    "FileResult",
    "Identifier",
    "ModelVerdict",
    "WindowPlan",
    "identify",
]
__version__ = "0.1.0"
