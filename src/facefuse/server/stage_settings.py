"""Whether the generated Triton configs carry the settings in force now.

Stage limits (the photo gates, the decode limits, ...) are written into each model's
config.pbtxt when the repository is built (`facefuse models build`): a setting changed
afterwards would not reach the stages, and the server would go on applying the old
value with nothing said. A stage parameter named after a setting carries that setting
(facefuse_build.configs writes `str(settings.<name>)`), so the two can be compared
before tritonserver starts.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from facefuse.settings import Settings

# Read by the stages from the server's environment when they start, over the config's
# value (facefuse.server.adapter.parameters): a different value here is not stale.
READ_AT_START = frozenset({"template_dir"})


def stale_stage_parameters(settings: Settings, repositories: list[Path]) -> list[str]:
    """'model: name is V in its config, the setting says W' for every stage parameter
    named after a setting whose value differs from the setting's now (not those in
    READ_AT_START, nor settings left unset)."""
    fields = type(settings).model_fields
    stale = []
    for repository in repositories:
        for path in sorted(Path(repository).glob("*/config.pbtxt")):
            config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
            for name, parameter in sorted(config.parameters.items()):
                value = getattr(settings, name, None) if name in fields and name not in READ_AT_START else None
                if value is not None and str(value) != parameter.string_value:
                    stale.append(f"{config.name}: {name} is {parameter.string_value} in its config, "
                                 f"the setting says {value}")
    return stale
