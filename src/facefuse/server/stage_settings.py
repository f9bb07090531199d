"""Whether the generated Triton configs carry the settings in force now.

Stage limits (the photo gates, the decode limits, ...) are written into each model's
config.pbtxt when the repository is built (`facefuse models build`): a setting changed
afterwards would not reach the stages, and the server would go on applying the old
value with nothing said. A stage parameter named after a setting carries that setting
(facefuse_build.configs writes `str(settings.<name>)`), so the two can be compared
before tritonserver starts. A parameter this code's configs carry but a config on disk
lacks (a checkout upgraded without a rebuild) would fail the stage when it loads; it is
named too.
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
    READ_AT_START, nor settings left unset), and 'model: its config lacks name' for every
    parameter the configs generated now give a model whose config on disk lacks it."""
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
        stale += _missing_parameters(settings, Path(repository))
    return stale


def _missing_parameters(settings: Settings, repository: Path) -> list[str]:
    from facefuse.models_admin.lifecycle import built_profile
    from facefuse_build.configs import Profile, model_config, model_specs

    profile = Profile(built_profile(repository))
    missing = []
    for spec in model_specs(profile, settings):
        path = repository / spec.name / "config.pbtxt"
        if path.is_file():
            on_disk = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig()).parameters
            generated = model_config(spec, profile).get("parameters", {})
            missing += [f"{spec.name}: its config lacks {name}" for name in sorted(set(generated) - set(on_disk))]
    return missing
