"""Static checks of the deployment files: Dockerfile, docker-compose.yaml and .env.example.

Nothing here needs a Docker engine: the files are parsed (PyYAML, tomllib, json) and the
compose file is interpolated the way ``docker compose`` does, with the values of
.env.example, before it is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from functools import cache
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_PATH = ROOT / "docker-compose.yaml"
ENV_EXAMPLE_PATH = ROOT / ".env.example"
DOCKERFILE_PATH = ROOT / "Dockerfile"
REQUIREMENTS_PATH = ROOT / "requirements.txt"
CONFIG_PATH = ROOT / "config" / "clickstream.toml"
GITIGNORE_PATH = ROOT / ".gitignore"

# Folders of the bundle; clickstream.config finds config/ and include/ as siblings of plugins/.
PROJECT_DIRS = ("dags", "plugins", "include", "config")
CONTAINER_ROOT = "/opt/airflow"
ONE_SHOT_LABEL = "org.clickstream.one-shot"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server"
CLICKHOUSE_NATIVE_PORT = 9000  # the server's native TCP port (9440 is its TLS variant)
MINIO_API_PORT = 9000
TELEGRAM_CONN_ID = "telegram_default"  # clickstream.alerts.DEFAULT_CONN_ID
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
PLACEHOLDER = "change-me"


# --- compose-style interpolation --------------------------------------------------------

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable is missing."""


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, set[str]]:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR<op>arg}`` like docker compose does.

    ``$$`` is a literal ``$``. Returns the expanded text and every variable name referenced,
    including those inside defaults.
    """
    out: list[str] = []
    names: set[str] = set()
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 2)
            value, referenced = _expand_braced(text[i + 2 : end], env)
            out.append(value)
            names |= referenced
            i = end + 1
        elif match := _VAR_NAME.match(text, i + 1):
            names.add(match.group())
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out), names


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unterminated ${{ in {text!r}")


def _expand_braced(body: str, env: Mapping[str, str]) -> tuple[str, set[str]]:
    match = _VAR_NAME.match(body)
    if not match:
        raise ValueError(f"invalid substitution ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return env.get(name, ""), {name}
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise ValueError(f"invalid substitution ${{{body}}}")
    argument, referenced = interpolate(rest[len(operator) :], env)
    referenced.add(name)
    is_set, non_empty = name in env, bool(env.get(name))
    if operator in (":?", "?") and not (non_empty if operator == ":?" else is_set):
        raise InterpolationError(f"{name}: {argument}")
    if operator == ":-":
        value = env[name] if non_empty else argument
    elif operator == "-":
        value = env[name] if is_set else argument
    elif operator == ":+":
        value = argument if non_empty else ""
    elif operator == "+":
        value = argument if is_set else ""
    else:
        value = env[name]
    return value, referenced


def _map_strings(node, func):
    if isinstance(node, str):
        return func(node)
    if isinstance(node, dict):
        return {key: _map_strings(value, func) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_strings(item, func) for item in node]
    return node


# --- the files --------------------------------------------------------------------------


def read_env_example() -> list[tuple[str, str, bool]]:
    """(name, value, documented) per variable line; documented = a comment right above."""
    entries = []
    previous = ""
    for raw in ENV_EXAMPLE_PATH.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {raw!r}"
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            entries.append((name.strip(), value, previous.startswith("#")))
        previous = line
    return entries


@cache
def env_example() -> dict[str, str]:
    return {name: value for name, value, _ in read_env_example()}


@cache
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text())


@cache
def _resolved_compose() -> tuple[dict | None, str | None]:
    try:
        return _map_strings(raw_compose(), lambda text: interpolate(text, env_example())[0]), None
    except InterpolationError as error:
        return None, str(error)


def compose() -> dict:
    """The compose file with .env.example's values substituted."""
    resolved, error = _resolved_compose()
    if error:
        pytest.fail(f"docker-compose.yaml needs a value .env.example does not give: {error}", pytrace=False)
    return resolved


def compose_variables() -> set[str]:
    names: set[str] = set()

    def collect(text: str) -> str:
        names.update(interpolate(text, env_example())[1])
        return text

    _map_strings(raw_compose(), collect)
    return names


@cache
def settings() -> dict:
    with CONFIG_PATH.open("rb") as handle:
        return tomllib.load(handle)


def services() -> dict[str, dict]:
    return compose()["services"]


def raw_services() -> dict[str, dict]:
    """Services before interpolation: names, labels and structure, for test collection.

    Collecting from these keeps a missing .env.example value a failing test rather than a
    collection error.
    """
    return raw_compose()["services"]


def airflow_services() -> list[str]:
    """Services running the project's image, built from ./Dockerfile (not Superset's, built
    from deploy/superset)."""
    return [
        name
        for name, spec in raw_services().items()
        if "build" in spec
        and (spec["build"] if isinstance(spec["build"], str) else spec["build"].get("context", "."))
        in (".", "./")
    ]


def is_one_shot(spec: dict) -> bool:
    return bool(str(_labels(spec).get(ONE_SHOT_LABEL, "")).strip())


def _labels(spec: dict) -> dict:
    labels = spec.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.partition("=")[::2] for item in labels)
    return labels


def service_using_image(repository: str) -> str:
    matches = [
        name for name, spec in services().items() if image_repository(spec.get("image", "")) == repository
    ]
    assert len(matches) == 1, f"expected one service running {repository}, found {matches}"
    return matches[0]


def image_repository(reference: str) -> str:
    reference = reference.split("@", 1)[0]
    head, _, last = reference.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name


def image_tag(reference: str) -> str | None:
    last = reference.split("@", 1)[0].rpartition("/")[2]
    return last.partition(":")[2] or None


def connection(service: str, conn_id: str) -> dict:
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    environment = services()[service].get("environment") or {}
    assert variable in environment, f"{service} has no {variable}"
    value = environment[variable]
    assert value.lstrip().startswith("{"), f"{variable} of {service} is not in JSON form"
    return json.loads(value)


def command_words(spec: dict) -> list[str]:
    command = spec.get("command") or []
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for raw in DOCKERFILE_PATH.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def requirements_pin(package: str) -> str:
    for line in REQUIREMENTS_PATH.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"requirements.txt does not pin {package}")


def pip_install_line() -> str:
    lines = [
        args for keyword, args in dockerfile_instructions() if keyword == "RUN" and "pip install" in args
    ]
    assert len(lines) == 1, f"expected one RUN pip install in the Dockerfile, found {len(lines)}"
    return lines[0]


def _service_params(names) -> list:
    return [pytest.param(name, id=name) for name in names]


# --- the interpolation helper itself -----------------------------------------------------


@pytest.mark.parametrize(
    ("template", "env", "expected", "names"),
    [
        pytest.param("${A}", {"A": "x"}, "x", {"A"}, id="braced"),
        pytest.param("a$A.b", {"A": "x"}, "ax.b", {"A"}, id="unbraced"),
        pytest.param("$${A}", {"A": "x"}, "${A}", set(), id="escaped-dollar"),
        pytest.param("${A:-d}", {"A": ""}, "d", {"A"}, id="colon-default-on-empty"),
        pytest.param("${A-d}", {"A": ""}, "", {"A"}, id="default-only-when-unset"),
        pytest.param("${A:-${B}x}", {"B": "y"}, "yx", {"A", "B"}, id="nested-default"),
        pytest.param("${A:?missing}", {"A": "v"}, "v", {"A"}, id="required-present"),
        pytest.param("${A:+alt}", {"A": "v"}, "alt", {"A"}, id="alternative"),
    ],
)
def test_interpolation_follows_compose_rules(template, env, expected, names):
    assert interpolate(template, env) == (expected, names)


@pytest.mark.parametrize(
    ("template", "env"),
    [
        pytest.param("${A:?set A}", {"A": ""}, id="colon-question-empty"),
        pytest.param("${A?set A}", {}, id="question-unset"),
    ],
)
def test_interpolation_rejects_missing_required_variable(template, env):
    with pytest.raises(InterpolationError, match="set A"):
        interpolate(template, env)


# --- .env.example -------------------------------------------------------------------------


def test_env_example_lists_every_compose_variable():
    missing = sorted(compose_variables() - env_example().keys())
    assert not missing, f"referenced by docker-compose.yaml but not in .env.example: {missing}"


def test_env_example_has_no_stale_variable():
    stale = sorted(env_example().keys() - compose_variables())
    assert not stale, f"in .env.example but never used by docker-compose.yaml: {stale}"


def test_env_example_defines_each_variable_once():
    names = [name for name, _, _ in read_env_example()]
    assert len(names) == len(set(names)), (
        f"defined more than once: {sorted({n for n in names if names.count(n) > 1})}"
    )


def test_env_example_documents_every_variable():
    undocumented = [name for name, _, documented in read_env_example() if not documented]
    assert not undocumented, f"no comment line right above: {undocumented}"


def test_env_example_holds_no_real_secret():
    suspicious = [
        name
        for name, value, _ in read_env_example()
        if SECRET_NAME.search(name) and value and PLACEHOLDER not in value
    ]
    assert not suspicious, f"secret-like values that are not a {PLACEHOLDER!r} placeholder: {suspicious}"


def test_env_file_is_git_ignored():
    patterns = {line.strip() for line in GITIGNORE_PATH.read_text().splitlines()}
    assert patterns & {".env", "/.env"}, ".env (the real secrets) must be listed in .gitignore"


def test_compose_resolves_with_env_example():
    """Every ${VAR:?...} guard is satisfied by the example values."""
    assert compose()["services"]


# --- services -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", _service_params(raw_services()))
def test_image_is_pinned(service):
    reference = services()[service].get("image", "")
    assert reference, f"{service} names no image"
    assert "$" not in reference, f"{service}: image {reference!r} left unresolved"
    if "@sha256:" in reference:
        return
    tag = image_tag(reference)
    assert tag, f"{service}: image {reference!r} has no tag"
    assert tag != "latest", f"{service}: image {reference!r} floats on latest"


@pytest.mark.parametrize("service", _service_params(raw_services()))
def test_service_has_healthcheck_or_is_documented_one_shot(service):
    spec = services()[service]
    healthcheck = spec.get("healthcheck") or {}
    test = healthcheck.get("test")
    if is_one_shot(spec):
        assert spec.get("restart", "no") == "no", f"one-shot {service} must not be restarted"
        assert not healthcheck, f"one-shot {service} exits: a healthcheck would never turn healthy"
        return
    assert test and not healthcheck.get("disable"), (
        f"{service} has no healthcheck; a service that exits on purpose needs the {ONE_SHOT_LABEL} label"
    )
    assert (test if isinstance(test, str) else test[0]) != "NONE", f"{service} disables its healthcheck"


def _dependency_edges() -> list:
    edges = []
    for name, spec in raw_services().items():
        depends_on = spec.get("depends_on") or {}
        for dependency in depends_on:
            condition = depends_on[dependency].get("condition") if isinstance(depends_on, dict) else None
            edges.append(pytest.param(name, dependency, condition, id=f"{name}->{dependency}"))
    return edges


@pytest.mark.parametrize(("service", "dependency", "condition"), _dependency_edges())
def test_dependency_waits_for_the_right_state(service, dependency, condition):
    assert dependency in services(), f"{service} depends on unknown service {dependency}"
    one_shot = is_one_shot(services()[dependency])
    expected = "service_completed_successfully" if one_shot else "service_healthy"
    assert condition == expected, f"{service} should wait for {dependency} with {expected}, not {condition}"


def test_worker_can_scale():
    worker = services()["airflow-worker"]
    assert "container_name" not in worker, "a fixed container_name forbids --scale airflow-worker=N"
    assert not worker.get("ports"), "host ports on the worker collide as soon as it is scaled"
    assert "hostname" not in worker, "a fixed hostname gives every worker the same Celery node name"
    assert command_words(worker)[:2] == ["celery", "worker"]


def _bind_mounts(spec: dict) -> dict[str, Path]:
    """Container path -> host path of every bind mount of a service."""
    mounts = {}
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        else:
            source, _, rest = volume.partition(":")
            target = rest.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        mounts[target.rstrip("/")] = (COMPOSE_PATH.parent / source).resolve()
    return mounts


def _dockerfile_copies() -> dict[str, str]:
    """Container path -> build-context path of every plain COPY."""
    copies = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        words = [word for word in arguments.split() if not word.startswith("--")]
        if any(word.startswith("--from") for word in arguments.split()):
            continue
        *sources, target = words
        for source in sources:
            copies[target.rstrip("/")] = source.rstrip("/")
    return copies


@pytest.mark.parametrize("directory", [pytest.param(d, id=d) for d in PROJECT_DIRS])
def test_dockerfile_bakes_project_dir(directory):
    assert _dockerfile_copies().get(f"{CONTAINER_ROOT}/{directory}") == directory, (
        f"the Dockerfile does not COPY {directory}/ to {CONTAINER_ROOT}/{directory}"
    )


def _service_dir_params() -> list:
    return [
        pytest.param(service, directory, id=f"{service}-{directory}")
        for service in airflow_services()
        for directory in PROJECT_DIRS
    ]


@pytest.mark.parametrize(("service", "directory"), _service_dir_params())
def test_project_dir_reaches_airflow_container(service, directory):
    spec = services()[service]
    target = f"{CONTAINER_ROOT}/{directory}"
    mounted = _bind_mounts(spec).get(target)
    if mounted is not None:
        assert mounted == (ROOT / directory).resolve(), f"{service} mounts {mounted} on {target}"
        return
    build = spec.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context", ".")
    assert (COMPOSE_PATH.parent / context).resolve() == ROOT, f"{service} neither mounts nor builds {target}"
    assert _dockerfile_copies().get(target) == directory, f"{service}: image lacks {target}"


def test_airflow_services_exist():
    expected = {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    }
    assert expected <= set(airflow_services()), f"missing: {sorted(expected - set(airflow_services()))}"


# --- connections -----------------------------------------------------------------------------


def _long_running_airflow_services() -> list:
    return _service_params(name for name in airflow_services() if not is_one_shot(raw_services()[name]))


@pytest.mark.parametrize("service", _long_running_airflow_services())
def test_clickhouse_connection_points_at_clickhouse_service(service):
    conn = connection(service, settings()["warehouse"]["conn_id"])
    clickhouse = service_using_image(CLICKHOUSE_IMAGE)
    server_env = services()[clickhouse]["environment"]
    assert conn["conn_type"] == "clickhouse"
    assert conn["host"] == clickhouse, (
        f"the connection goes to {conn['host']!r}, not the {clickhouse} service"
    )
    assert int(conn["port"]) == CLICKHOUSE_NATIVE_PORT
    assert CLICKHOUSE_NATIVE_PORT in {int(p) for p in services()[clickhouse].get("expose", [])}
    assert not conn.get("extra", {}).get("chdb_path"), "the stack must use the server, not embedded chdb"
    assert (conn["login"], conn["password"]) == (
        server_env["CLICKHOUSE_USER"],
        server_env["CLICKHOUSE_PASSWORD"],
    )
    assert conn["schema"] == server_env["CLICKHOUSE_DB"] == settings()["warehouse"]["database"]


@pytest.mark.parametrize("service", _long_running_airflow_services())
def test_s3_connection_points_at_minio_service(service):
    conn = connection(service, settings()["source"]["conn_id"])
    minio = service_using_image("quay.io/minio/minio")
    server_env = services()[minio]["environment"]
    endpoint = urlsplit(conn["extra"]["endpoint_url"])
    assert conn["conn_type"] == "aws"
    assert (endpoint.hostname, endpoint.port) == (minio, MINIO_API_PORT)
    assert (conn["login"], conn["password"]) == (
        server_env["MINIO_ROOT_USER"],
        server_env["MINIO_ROOT_PASSWORD"],
    )


@pytest.mark.parametrize("service", _long_running_airflow_services())
def test_telegram_connection_is_complete(service):
    conn = connection(service, TELEGRAM_CONN_ID)
    assert conn["conn_type"] == "telegram"
    assert conn.get("password"), "the bot token goes in password"
    assert conn.get("host"), "the chat id goes in host"


def test_seed_fills_the_configured_bucket_from_start_date():
    seeds = [
        name
        for name, spec in services().items()
        if "/opt/airflow/scripts/synthetic_clickstream.py" in command_words(spec)
    ]
    assert len(seeds) == 1, f"expected one service running the generator, found {seeds}"
    words = command_words(services()[seeds[0]])
    options = dict(pairwise(words))
    assert options.get("--conn-id") == settings()["source"]["conn_id"]
    assert options.get("--bucket") == settings()["source"]["bucket"]
    assert options.get("--start") == settings()["start_date"]
    assert "--create-bucket" in words
    mounts = {volume.split(":")[1] for volume in services()[seeds[0]]["volumes"]}
    assert "/opt/airflow/scripts" in mounts, "the generator is not in the image; the seed mounts scripts/"


# --- Dockerfile ------------------------------------------------------------------------------


def _airflow_version_sources() -> list:
    def from_tag() -> str | None:
        bases = [args.split()[-1] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
        assert len(bases) == 1, f"expected one FROM, found {bases}"
        assert image_repository(bases[0]) == "apache/airflow", f"base image is {bases[0]}"
        match = re.fullmatch(r"(\d+\.\d+\.\d+)(-python\d+\.\d+)?", image_tag(bases[0]) or "")
        return match and match.group(1)

    def from_pip_line() -> str | None:
        match = re.search(r"apache-airflow==([\w.]+)", pip_install_line())
        return match and match.group(1)

    return [
        pytest.param(from_tag, id="FROM-tag"),
        pytest.param(from_pip_line, id="pip-install-pin"),
    ]


@pytest.mark.parametrize("version_of", _airflow_version_sources())
def test_dockerfile_airflow_version_matches_requirements(version_of):
    assert version_of() == requirements_pin("apache-airflow")


def test_dockerfile_installs_requirements_as_airflow_user():
    line = pip_install_line()
    assert re.search(r"requirements=/requirements\.txt", line), (
        "the pip line does not install requirements.txt"
    )
    user = "root"
    for keyword, arguments in dockerfile_instructions():
        if keyword == "USER":
            user = arguments.split(":")[0]
        if keyword == "RUN" and arguments == line:
            break
    assert user == "airflow", f"pip runs as {user}; the official pattern installs as the airflow user"


# --- executor and pool -------------------------------------------------------------------------


@pytest.mark.parametrize("service", _service_params(airflow_services()))
def test_celery_executor_on_redis_and_postgres(service):
    environment = services()[service]["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(environment["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == service_using_image("redis")
    for variable in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        url = urlsplit(environment[variable])
        assert "postgresql" in url.scheme, f"{variable} is {url.scheme}"
        assert url.hostname == service_using_image("postgres"), f"{variable} points at {url.hostname}"


def test_airflow_init_creates_configured_pool():
    pool = settings()["warehouse"]["pool"]
    script = " ".join(command_words(services()["airflow-init"]))
    match = re.search(rf"airflow pools set {re.escape(pool)} \"?(\S+?)\"? ", script)
    assert match, f"airflow-init does not run `airflow pools set {pool} <slots> ...`"
    assert int(match.group(1)) >= 1


# --- only what production needs in the image --------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_production_requirements_leave_out_the_embedded_engine():
    assert not {"chdb", "chdb-core"} & set(_pins(REQUIREMENTS_PATH)), (
        "chdb belongs in requirements-embedded.txt"
    )
    embedded = ROOT / "requirements-embedded.txt"
    assert "-r requirements.txt" in embedded.read_text()
    assert "chdb" in _pins(embedded)
    assert "-r requirements-embedded.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_image_carries_the_embedded_engine_only_when_asked():
    arguments = dict(
        args.partition("=")[::2] for keyword, args in dockerfile_instructions() if keyword == "ARG"
    )
    assert arguments.get("WITH_EMBEDDED_ENGINE") == "false", "the default image must not carry chdb"
    line = pip_install_line()
    assert re.search(
        r'if \[ "\$WITH_EMBEDDED_ENGINE" = "true" \]; then requirements=/requirements-embedded\.txt;', line
    )
    assert re.search(r'-r "\$requirements"', line)
    copied = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "COPY")
    assert "requirements-embedded.txt" in copied


def test_the_clickhouse_server_can_read_the_bucket_the_worker_reads():
    """The server reads source objects itself: its endpoint credentials cover the worker's bucket URL."""
    import xml.etree.ElementTree as ElementTree

    clickhouse = services()["clickhouse"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in clickhouse["volumes"]}
    host_path = mounts["/etc/clickhouse-server/config.d/clickstream_s3.xml"]
    root = ElementTree.parse(ROOT / host_path.replace("${AIRFLOW_PROJ_DIR:-.}/", "")).getroot()
    [endpoint] = root.findall("./s3/*")
    s3_extra = json.loads(services()["airflow-worker"]["environment"]["AIRFLOW_CONN_CLICKSTREAM_S3"])["extra"]
    bucket = settings()["source"]["bucket"]
    assert endpoint.findtext("endpoint") == f"{s3_extra['endpoint_url'].rstrip('/')}/{bucket}/"
    for element in ("access_key_id", "secret_access_key"):
        variable = endpoint.find(element).get("from_env")
        assert variable in clickhouse["environment"], f"{variable} is not given to the clickhouse service"


# --- placeholder secrets are refused at start --------------------------------------------------

CHECK_SECRETS = ROOT / "deploy" / "check-secrets.sh"
REAL_SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "7Yq0wz3nVx",
    "AIRFLOW__API__SECRET_KEY": "p2Lr8Hs1Qa",
    "_AIRFLOW_WWW_USER_PASSWORD": "w4Kd9Te6Rb",
    "POSTGRES_PASSWORD": "m3Jc7Gu2Zn",
    "CLICKHOUSE_PASSWORD": "q8Fv5Ly0Xe",
    "MINIO_ROOT_PASSWORD": "t6Hb1Ws4Pk",
    "SUPERSET_SECRET_KEY": "w2Nd8Qs5Rv",
    "SUPERSET_DB_PASSWORD": "k7Ta3Mx9Lc",
    "SUPERSET_ADMIN_PASSWORD": "h4Ye6Bp1Gz",
    "CLICKHOUSE_DASHBOARDS_PASSWORD": "u5Wr2Jn8Df",
    "AIRFLOW__CORE__FERNET_KEY": "ZmFrZS1mZXJuZXQta2V5LTMyLWJ5dGVzLWxvbmctLS0=",
}


def run_check_secrets(**environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CHECK_SECRETS)],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_init_service_checks_secrets_before_anything_else():
    init = services()["airflow-init"]
    script = init["command"][-1]
    assert script.splitlines()[1].strip() == "bash /opt/airflow/deploy/check-secrets.sh"
    assert "/opt/airflow/deploy" in {volume.split(":")[1] for volume in init["volumes"]}
    for name in ("POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert name in init["environment"], f"the check needs {name}"


def test_real_secrets_and_a_fernet_key_pass_the_check():
    completed = run_check_secrets(**REAL_SECRETS)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("name", sorted(set(REAL_SECRETS) - {"AIRFLOW__CORE__FERNET_KEY"}))
def test_each_placeholder_secret_is_refused_by_name(name):
    completed = run_check_secrets(**{**REAL_SECRETS, name: "change-me"})
    assert completed.returncode == 1
    assert f"ERROR: {name} still holds the placeholder from .env.example" in completed.stderr
    assert "Refusing to start" in completed.stderr


def test_an_empty_fernet_key_is_refused():
    completed = run_check_secrets(**{**REAL_SECRETS, "AIRFLOW__CORE__FERNET_KEY": ""})
    assert completed.returncode == 1
    assert "AIRFLOW__CORE__FERNET_KEY (AIRFLOW_FERNET_KEY in .env) is empty" in completed.stderr


def test_the_env_example_as_it_is_is_refused_unless_explicitly_allowed():
    example = {name: value for name, value, _ in read_env_example()}
    as_shipped = {
        "AIRFLOW__API_AUTH__JWT_SECRET": example["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__API__SECRET_KEY": example["AIRFLOW_API_SECRET_KEY"],
        "_AIRFLOW_WWW_USER_PASSWORD": example["_AIRFLOW_WWW_USER_PASSWORD"],
        "POSTGRES_PASSWORD": example["POSTGRES_PASSWORD"],
        "CLICKHOUSE_PASSWORD": example["CLICKHOUSE_PASSWORD"],
        "MINIO_ROOT_PASSWORD": example["MINIO_ROOT_PASSWORD"],
        "SUPERSET_SECRET_KEY": example["SUPERSET_SECRET_KEY"],
        "SUPERSET_DB_PASSWORD": example["SUPERSET_DB_PASSWORD"],
        "SUPERSET_ADMIN_PASSWORD": example["SUPERSET_ADMIN_PASSWORD"],
        "CLICKHOUSE_DASHBOARDS_PASSWORD": example["CLICKHOUSE_DASHBOARDS_PASSWORD"],
        "AIRFLOW__CORE__FERNET_KEY": example["AIRFLOW_FERNET_KEY"],
    }
    refused = run_check_secrets(**as_shipped)
    assert refused.returncode == 1
    assert refused.stderr.count("ERROR: ") == 11

    allowed = run_check_secrets(**as_shipped, ALLOW_PLACEHOLDER_VALUES="true")
    assert allowed.returncode == 0
    assert allowed.stderr.count("WARNING: ") == 12, "each problem, then the warning that it starts anyway"


# --- Superset ---------------------------------------------------------------------------------

SUPERSET_DIR = ROOT / "deploy" / "superset"


def test_superset_image_is_the_official_one_at_the_bundles_version():
    [base] = re.findall(r"^FROM (\S+)$", (SUPERSET_DIR / "Dockerfile").read_text(), re.MULTILINE)
    [pinned] = re.findall(
        r"^apache_superset==(\S+)$", (SUPERSET_DIR / "requirements.txt").read_text(), re.MULTILINE
    )
    assert base == f"apache/superset:{pinned}"
    for name in ("superset-init", "superset"):
        assert services()[name]["image"] == f"clickstream-superset:{pinned}"


def test_superset_keeps_its_metadata_in_a_postgres_database_of_its_own():
    environment = services()["superset"]["environment"]
    assert re.fullmatch(
        r"postgresql\+psycopg2://superset:[^@]+@postgres/superset", environment["SUPERSET_METADATA_URI"]
    )
    assert services()["superset-init"]["entrypoint"] == ["bash", "/app/clickstream/init.sh"]


def test_superset_reads_the_marts_as_the_read_only_user_and_listens_on_loopback():
    environment = services()["superset"]["environment"]
    uri = environment["CLICKSTREAM_DASHBOARDS_DATABASE_URI"]
    assert uri.startswith(f"clickhousedb://{environment['CLICKHOUSE_DASHBOARDS_USER']}:")
    assert environment["CLICKHOUSE_DASHBOARDS_USER"] != environment["CLICKHOUSE_USER"]
    assert uri.endswith(f"@clickhouse:8123/{environment['CLICKHOUSE_DB']}")
    assert [port.split(":")[0] for port in services()["superset"]["ports"]] == ["127.0.0.1"]
