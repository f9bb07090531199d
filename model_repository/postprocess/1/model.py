"""postprocess (gpu profile): every fused face verified (refused as FUSION_QUALITY_LOW if it
fails), then pasted into the template, AI label, encoded poster, with the poster's quality
and warnings from that check (facefuse.server.poster). The cpu profile finishes the
poster inside fuse_faces with the same code.
"""

from pathlib import Path

from facefuse.server.adapter import array, parameters, respond_each
from facefuse.server.poster import finish_poster
from facefuse.stages.template_bank import TemplateBank
from facefuse.templates import TemplateStore


class TritonPythonModel:
    def initialize(self, args):
        self.bank = TemplateBank(TemplateStore(Path(parameters(args)["template_dir"])))

    def execute(self, requests):
        return respond_each(requests, lambda request: finish_poster(
            self.bank, request, array(request, "fused_faces")[0], array(request, "fused_masks")[0]))
