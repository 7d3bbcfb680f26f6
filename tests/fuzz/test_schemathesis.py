"""Schemathesis against both OpenAPI specs, in-process (ASGI), with every check (``--checks all``):
no 500s, documented status codes and bodies, schema-valid requests accepted, invalid ones refused.

Every operation gets schema-valid requests and schema-violating ones, each run through all checks.
Where validity depends on what no schema can say (the bytes are an image, the folder exists on the
server, the model is installed), a 422 counts as accepting valid data: those operations are listed
in STATE_DEPENDENT.
Example counts are small so each app takes well under a minute on two cores. The operations are
driven with Hypothesis directly: ``schemathesis.pytest.from_fixture`` breaks on pytest 9
(it reads ``request.node._nodeid``, which pytest 9 removed).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from PIL import Image
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from tests.conftest import make_core
from tests.reliability import tried
from tests.service.helpers import write_fake_models

load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())
# Operations whose schema-valid requests can still be unusable (422) for reasons of content or server state.
STATE_DEPENDENT = (
    r"^/v1/(ocr|caption|caption-batch|embed-image)$",  # the uploaded bytes must be a decodable image
    r"^/api/uploads$",  # same
    r"^/api/search/image$",  # same
    r"^/api/folders$",  # the path must be an existing folder on the server
    r"^/api/folders/\{folder_id\}$",
    r"^/api/memes/\{meme_id\}$",  # tag names are cleaned (control characters dropped) before the length check
    r"^/api/memes/\{meme_id\}/describe$",  # the caption model must be known
    r"^/api/jobs$",
    r"^/api/models/default$",
)
_CONFIG = SchemathesisConfig.from_dict({"operations": [
    {"include-path-regex": regex,
     "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]}}}
    for regex in STATE_DEPENDENT
]})


def accept_422_where_state_decides(schema):
    """Adds the STATE_DEPENDENT settings after filtering: a config passed at load time makes
    schemathesis 4.32 ignore ``include``/``exclude``."""
    schema.config.operations.operations.extend(_CONFIG.projects.default.operations.operations)
    return schema
FUZZ = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
TOKEN = "fuzz-token-0123456789"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def service_schema(tmp_path_factory, shared_models_dir):
    from memesearch.config import Settings
    from memesearch.service.app import create_app

    home = tmp_path_factory.mktemp("fuzz-service") / "data"
    write_fake_models(home, delay=0.0)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    # Default caption model "fake": a generated request without a model never loads real weights.
    app = create_app(Settings(home=home, threads=1, caption_model="fake", ml_token=TOKEN))
    # With a token, the schema itself needs it too.
    return accept_422_where_state_decides(
        schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {TOKEN}"}))


def fuzz_every_operation(schema) -> dict[str, int]:
    """Runs each operation's generated cases; returns how many calls each operation got."""
    calls: dict[str, int] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, ALL_CHECKS, auth, calls)
    return calls


def _fuzz(operation, mode, checks, headers, calls) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(headers=headers, checks=checks)
        calls[operation.label] = calls.get(operation.label, 0) + 1

    try:
        run()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to generate.
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_ml_service_api(service_schema):
    calls = fuzz_every_operation(service_schema)
    assert {"POST /v1/ocr", "POST /v1/caption", "POST /v1/caption-batch", "POST /v1/embed", "GET /v1/models"} <= set(calls)
    assert sum(calls.values()) >= 30
    tried(sum(calls.values()))


@pytest.fixture(scope="module")
def web_schema(tmp_path_factory, shared_models_dir):
    from memesearch.library.scanner import scan_folder
    from memesearch.web import create_app

    root = tmp_path_factory.mktemp("fuzz-web")
    folder = root / "memes"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (24, 24), (index * 90, 40, 40)).save(folder / f"m{index}.png")
    core = make_core(root / "data", shared_models_dir, threads=1, password="fuzz-password", api_token=TOKEN)
    scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
    for meme_id in core.store.meme_ids():
        core.store.set_ocr(meme_id, f"meme number {meme_id}", "test")
    core.pipeline.run_embed()
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(core=core),
                                               headers={"Authorization": f"Bearer {TOKEN}"})
    # The JSON API only (pages are HTML). Excluded: an endless event stream and the
    # routes that download or run real caption models.
    schema = schema.include(path_regex=r"^/api/").exclude(path_regex=r"(/events$|/models/.+/pull$|/models/check$)")
    yield accept_422_where_state_decides(schema)
    core.close()


def test_web_json_api(web_schema):
    calls = fuzz_every_operation(web_schema)
    assert {"GET /api/search", "PATCH /api/memes/{meme_id}", "POST /api/folders"} <= set(calls)
    assert sum(calls.values()) >= 100
    tried(sum(calls.values()))
