"""A real tritonserver on the built cpu repository, started once per test session.

Models are built (a no-op when unchanged) and the sample templates registered before
the server starts; the server's log is printed when it fails to become ready.
"""

from __future__ import annotations

import pytest

from facefuse.server.triton import embedded_triton


@pytest.fixture(scope="session")
def built_repository(settings):
    from facefuse_build.configs import Profile
    from facefuse_build.pipeline import build_repository

    # Configs name the default template folder; the servers the tests start read the
    # temporary one from FACEFUSE_TEMPLATE_DIR instead (see tests/conftest.py).
    build_repository(Profile("cpu"), settings.model_copy(update={"template_dir": None}), log=lambda *_: None)
    return settings.model_repository_dir


@pytest.fixture(scope="session")
def template_store(settings, built_repository):
    from facefuse.local_pipeline import LocalPipeline
    from facefuse.samples import is_registered, sample_templates
    from facefuse.templates import TemplateStore

    store = TemplateStore(settings.templates_path)
    pipeline = None
    for template_id, (data, source) in sample_templates().items():
        if not is_registered(store, template_id, source):
            pipeline = pipeline or LocalPipeline(settings)
            store.add(pipeline.analyze_template(template_id, data, source=source))
    return store


@pytest.fixture(scope="session")
def triton(settings, built_repository, template_store):
    with embedded_triton(settings) as server:
        yield server


@pytest.fixture(scope="session")
def triton_client(triton):
    client = triton.client()  # sends the gateway key, as the gateway does
    yield client
    client.close()
