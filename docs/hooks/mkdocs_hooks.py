"""MkDocs hooks (mkdocs.yml `hooks:`): generated reference pages and pages kept beside their code.

- A page holding `<!-- generated: settings -->` or `<!-- generated: proto -->` gets the
  configuration reference (settings_reference) or the API reference (proto_reference)
  in its place at build time.
- READMEs and reports that live next to what they describe (ensembles/, loadtest/, the
  sweep table beside the tuned configs) are served as pages from where they are, not
  copied into docs/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proto_reference  # noqa: E402
import settings_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Outside docs/, served under the same path: ensembles/README.md is the page ensembles/.
MOUNTED = ["ensembles/README.md", "loadtest/README.md", "loadtest/reports/*/report.md", "loadtest/reports/*/check.md",
           "loadtest/reports/*/*.png", "build/facefuse_build/tuned/*.md"]
GENERATED = {
    "<!-- generated: settings -->": settings_reference.render,
    "<!-- generated: proto -->": proto_reference.render,
}


def on_files(files, config):
    for pattern in MOUNTED:
        for path in sorted(ROOT.glob(pattern)):
            files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    for marker, render in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
