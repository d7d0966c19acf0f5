"""infra/compose.yaml, checked structurally (these machines have no Docker engine, so nothing here starts a
container): the dev/test infrastructure (pinned images, auto-create off, ports matching `mdpipe infra`), the
product profile (broker, TimescaleDB, three gatherers, dedup, sink, Prometheus with the rules, Grafana with the
dashboard), health checks, dependency conditions, state volumes, the image built from the Dockerfile, every mdpipe
command and setting they pass, and the Prometheus / Grafana files they mount. `docker compose config` also runs
where the compose plugin is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import yaml

import venues
from infra.manager import COMPOSE_BOOTSTRAP, COMPOSE_DSN, COMPOSE_FILE
from mdpipe.cli import build_parser
from mdpipe.config import Config, ConfigError, GatherConfig, load_config
from tests.infra.env_files import read_env_file
from tests.infra.env_files import venue_env as _venue_env
from tests.infra.env_files import venue_file as _venue_file
from venues import default_name

ROOT = COMPOSE_FILE.parent.parent
INFRA = COMPOSE_FILE.parent
DEFAULT_SERVICES = {"redpanda", "console", "timescaledb"}
STAGE_SECTIONS = {"gather": "gather", "dedup": "dedup", "sink": "sink"}  # mdpipe command -> config section
# The fixed metrics ports of docs/operations-observability.md and infra/prometheus/prometheus.yml: gatherer
# gather.ids[i] -> 9101 + i, dedup 9111, sink 9121, emulator 9131.
FIXED_PORTS = {"gather-g1": 9101, "gather-g2": 9102, "gather-g3": 9103, "dedup": 9111, "sink": 9121, "venue": 9131}


# --- helpers: the file as compose sees it --------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, ${VAR:+alt}, ${VAR+alt}, defaults nested. ValueError on anything else (as compose rejects it)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if i + 1 < len(text) and text[i + 1] == "{":
            value, i = _braced(text, i + 2, env)
            out.append(value)
            continue
        match = _VAR.match(text, i + 1)
        if not match:
            raise ValueError(f"invalid interpolation at {text[i:]!r}")
        out.append(env.get(match.group(), ""))
        i = match.end()
    return "".join(out)


def _braced(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    match = _VAR.match(text, start)
    if not match:
        raise ValueError(f"invalid variable name in {text[start - 2 :]!r}")
    name, i = match.group(), match.end()
    if text.startswith("}", i):
        return env.get(name, ""), i + 1
    op = next((o for o in (":-", ":?", ":+", "-", "?", "+") if text.startswith(o, i)), None)
    if op is None:
        raise ValueError(f"invalid interpolation operator after ${{{name} in {text!r}")
    i += len(op)
    depth, j = 1, i
    while j < len(text) and depth:  # the matching brace, nested ${...} included
        if text.startswith("${", j):
            depth, j = depth + 1, j + 2
            continue
        depth -= text[j] == "}"
        j += 1
    if depth:
        raise ValueError(f"unclosed ${{ in {text!r}")
    word = interpolate(text[i : j - 1], env)
    value, present = env.get(name), name in env
    if op == ":-":
        return (value if value else word), j
    if op == "-":
        return (value if present else word), j
    if op == ":+":
        return (word if value else ""), j
    if op == "+":
        return (word if present else ""), j
    if not (value if op == ":?" else present):
        raise ValueError(f"{name}: {word}")
    return value or "", j


def _resolved(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_resolved(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _resolved(v, env) for k, v in value.items()}
    return value


def _environment(service: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's container environment, interpolated with ``env`` (None: what `make product` gives compose,
    the default venue's deployment file; see :func:`tests.infra.env_files.venue_env`)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    variables = _venue_env() if env is None else env
    return {k: interpolate(str(v), variables) for k, v in raw.items()}


def _argv(service: dict[str, Any]) -> list[str]:
    """The container's argv: entrypoint + command (the image's ENTRYPOINT is `mdpipe`)."""
    entry = service.get("entrypoint") or ["mdpipe"]
    return [*entry, *(service.get("command") or [])]


def _mdpipe_services() -> dict[str, dict[str, Any]]:
    """Services running the mdpipe runtime image (the test image runs pytest instead)."""
    return {n: s for n, s in _services().items() if "build" in s and s["build"].get("target") == "runtime"}


def _stages() -> dict[str, dict[str, Any]]:
    """Long-running mdpipe processes with a metrics server: gatherers, dedup, sink, the emulator (not the one-shot
    `topics create` / `sink migrate`)."""
    return {n: s for n, s in _mdpipe_services().items() if _argv(s)[1] in (*STAGE_SECTIONS, "sim") and not _one_shot(s)}


def _profiles(service: dict[str, Any]) -> set[str]:
    return set(service.get("profiles") or [])


def _enabled(profile: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if not _profiles(s) or profile in _profiles(s)}


def _one_shot(service: dict[str, Any]) -> bool:
    """A task that runs to completion: `restart: "no"` said explicitly and no health check."""
    return service.get("restart") == "no" and "healthcheck" not in service


def _metrics_address(service: dict[str, Any], env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(bind host, port) of the /metrics + /healthz server the service's process opens, computed the way its
    command does: the configuration the container's environment gives (defaults included), then the CLI flags."""
    from mdpipe.config import gatherer_metrics_port

    argv = _resolved(_argv(service), env or {})
    args = build_parser().parse_args(argv[1:])
    config = load_config(environ=_environment(service, env), use_infra_state=False)
    if args.command == "gather":
        host, port = config.gather.metrics_host, gatherer_metrics_port(config.gather, args.id)
    elif args.command in ("dedup", "sink", "sim"):
        section = getattr(config, args.command)
        host, port = section.metrics_host, section.metrics_port
    else:
        raise AssertionError(f"{argv}: not a stage with a metrics server")
    return host, args.metrics_port if args.metrics_port is not None else port


def _stage_port(service: dict[str, Any]) -> int:
    return _metrics_address(service)[1]


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (relative to the compose file)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (INFRA / source).resolve()
    return mounts


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host file a container path of ``service`` shows, through its bind mounts."""
    for target, source in sorted(_bind_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted")


# --- the interpolation helper itself ----------------------------------------------------------------------------
def test_interpolation_helper_follows_compose_rules() -> None:
    env = {"A": "a", "E": ""}
    assert interpolate("${A:-x}/${B:-x}/${E:-x}/${E-x}/$${A}/$A", env) == "a/x/x//${A}/a"
    assert interpolate("${B:-${A:-y}}", env) == "a" and interpolate("${B:-${C:-y}}", env) == "y"
    with pytest.raises(ValueError):
        interpolate("${A:=x}", env)
    with pytest.raises(ValueError):
        interpolate("${B:?set B}", env)


# --- the file as a whole ---------------------------------------------------------------------------------------
def test_every_value_interpolates_and_the_file_has_no_tabs() -> None:
    text = COMPOSE_FILE.read_text()
    assert "\t" not in text
    _resolved(_compose(), _venue_env())  # raises on any interpolation compose would reject


def test_without_a_venue_compose_refuses_every_command_with_the_fix() -> None:
    """Compose interpolates every service whatever the profile: a bare `docker compose ...` (no venue file) stops
    with one line naming the fix instead of recreating every gatherer with an empty venue name."""
    for env in ({}, {k: v for k, v in _venue_env().items() if k != "MDPIPE_VENUE"}, {"MDPIPE_VENUE": ""}):
        with pytest.raises(ValueError, match=r"MDPIPE_VENUE: .*--env-file venues/<name>/deploy/compose\.env") as err:
            _resolved(_compose(), env)
        assert "\n" not in str(err.value)
    for name in ("gather-g1", "gather-g2", "gather-g3", "venue"):  # where the venue is read
        with pytest.raises(ValueError, match="MDPIPE_VENUE"):
            _environment(_services()[name], {})


def test_infra_up_docker_passes_the_default_venues_file() -> None:
    from infra.manager import compose_command

    cmd = compose_command("up", "-d", "--wait")
    env_file = Path(cmd[cmd.index("--env-file") + 1])
    assert env_file == ROOT / "venues" / default_name() / "deploy" / "compose.env" and env_file.is_file()
    _resolved(_compose(), read_env_file(env_file))


def test_dev_infrastructure_is_unchanged_for_make_up_and_the_tests() -> None:
    services = _services()
    assert {n for n, s in services.items() if not _profiles(s)} == DEFAULT_SERVICES
    images = {name: services[name]["image"] for name in DEFAULT_SERVICES}
    for name, image in images.items():
        assert re.search(r":v?\d+\.\d+\.\d+(-pg\d+)?$", image), f"{name} image not pinned: {image}"
    assert images["timescaledb"].startswith("timescale/timescaledb:") and images["timescaledb"].endswith("-pg17")
    redpanda = " ".join(services["redpanda"]["command"])
    assert "--mode dev-container" in redpanda
    assert "auto_create_topics_enabled false" in " ".join(services["redpanda"]["healthcheck"]["test"])
    kafka_host, kafka_port = COMPOSE_BOOTSTRAP.rsplit(":", 1)
    assert f"{kafka_host}:{kafka_port}:{kafka_port}" in services["redpanda"]["ports"]
    assert f"external://127.0.0.1:{kafka_port}" in redpanda
    dsn = urlsplit(COMPOSE_DSN)
    tsdb = services["timescaledb"]
    assert f"{dsn.hostname}:{dsn.port}:5432" in tsdb["ports"]
    assert tsdb["environment"]["POSTGRES_PASSWORD"] == dsn.password
    assert tsdb["environment"]["POSTGRES_DB"] == dsn.path.lstrip("/")
    assert "healthcheck" in services["redpanda"] and "healthcheck" in tsdb


def test_every_published_port_is_on_the_hosts_loopback_only() -> None:
    """The development database password and the unauthenticated broker, console, metrics, Prometheus and Grafana
    must not answer the network: `HOST:CONTAINER` publishes on every interface, so each entry names 127.0.0.1."""
    for name, service in _services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:") and str(port).count(":") == 2, f"{name}: {port}"


def test_test_fixtures_pin_the_same_images() -> None:
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    for name in ("redpanda", "timescaledb"):
        assert f'"{_services()[name]["image"]}"' in conftest


# --- the product profile -----------------------------------------------------------------------------------------
def test_product_profile_runs_the_whole_product() -> None:
    enabled = _enabled("product")
    commands = {name: _argv(s)[1:] for name, s in enabled.items() if name in _mdpipe_services()}
    gatherers = sorted(c[c.index("--id") + 1] for c in commands.values() if c[0] == "gather")
    assert gatherers == sorted(GatherConfig().ids) and len(gatherers) == 3  # raw.<id> topics exist for exactly these
    assert sum(c[0] == "dedup" for c in commands.values()) == 1
    assert sum(c[0] == "sink" for c in commands.values()) == 2  # `sink migrate` (one-shot), then the sink
    assert ["topics", "create"] in commands.values()
    assert {"redpanda", "timescaledb", "prometheus", "grafana"} <= set(enabled)
    assert enabled["prometheus"]["image"].startswith("prom/prometheus:v")
    assert enabled["grafana"]["image"].startswith("grafana/grafana:")
    for name in ("prometheus", "grafana"):
        assert re.search(r":v?\d+\.\d+\.\d+$", enabled[name]["image"]), f"{name} image not pinned"
    assert "venue" not in enabled and "demo" not in enabled and "tests" not in enabled


def test_mdpipe_services_run_the_image_built_from_the_dockerfile(dockerfile: Any) -> None:
    stages = dockerfile.stages
    services = _mdpipe_services()
    assert {"topics", "gather-g1", "gather-g2", "gather-g3", "dedup", "sink", "venue", "demo"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        assert (INFRA / build["context"]).resolve() == ROOT, name
        assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file(), name
        assert build["target"] in stages, name
        assert interpolate(service["image"], {}) == "mdpipe:local", name
    tests = _services()["tests"]
    assert tests["build"]["target"] == "test" and "test" in stages
    assert interpolate(tests["image"], {}) != "mdpipe:local"  # never the runtime image's tag


def test_every_mdpipe_command_parses_with_the_cli() -> None:
    parser = build_parser()
    for name, service in _mdpipe_services().items():
        argv = _resolved(_argv(service), {})
        assert argv[0] == "mdpipe", name
        parser.parse_args(argv[1:])  # SystemExit on an unknown command or flag


def test_every_setting_the_services_pass_is_a_real_setting() -> None:
    known = {(f.name, g.name) for f in msgspec.structs.fields(Config) for g in msgspec.structs.fields(f.type)}
    for name, service in _mdpipe_services().items():
        env = _environment(service)
        for key in env:
            section, _, setting = key.removeprefix("MDPIPE_").lower().partition("__")
            if key.startswith("MDPIPE_") and setting:
                assert (section, setting) in known, f"{name}: {key}"
        config = load_config(environ=env, use_infra_state=False)  # ConfigError names a wrong value
        if "MDPIPE_KAFKA__BOOTSTRAP_SERVERS" in env:
            assert config.kafka.bootstrap_servers == "redpanda:9092", name


def test_stages_bind_their_fixed_metrics_ports_on_all_interfaces() -> None:
    """The port each process really binds (its config defaults, the container's settings and its flags, as the
    command computes it: a gatherer adds its index in gather.ids) is the stage's documented fixed port, bound on
    0.0.0.0 so that Prometheus in another container reaches it, and published on the host's 127.0.0.1."""
    addresses = {}
    for name, service in _stages().items():
        addresses[name] = _host, port = _metrics_address(service)
        assert f"127.0.0.1:{port}:{port}" in service["ports"], name
    assert addresses == {name: ("0.0.0.0", port) for name, port in FIXED_PORTS.items()}


def test_stages_health_checks_probe_their_own_healthz() -> None:
    for name, service in _stages().items():
        if _argv(service)[1] == "sim":  # its health check is /_sim/stats on the venue port
            continue
        port = _stage_port(service)
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and test[-1] == f"http://127.0.0.1:{port}/healthz", name
        assert service["restart"] == "unless-stopped", name


def test_health_check_command_fails_on_an_unhealthy_answer(tmp_path: Path) -> None:
    """The stages' check command, run against a real /healthz answering 200 then 503 (mdpipe.metrics)."""
    import sys

    from mdpipe.metrics import MetricsServer

    state = {"ok": True}
    server = MetricsServer(0, health=lambda: state["ok"])
    try:
        test = _services()["gather-g1"]["healthcheck"]["test"]
        cmd = [sys.executable, *test[2:-1], f"http://127.0.0.1:{server.port}/healthz"]
        assert subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
        state["ok"] = False
        assert subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0
    finally:
        server.close()


def test_long_running_services_have_health_checks() -> None:
    for name, service in _services().items():
        if not _one_shot(service) and name != "console":
            assert "healthcheck" in service, name


def test_depends_on_waits_for_health_or_completion() -> None:
    services = _services()
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            target = services[dep]
            # a dependency must be enabled whenever the dependent is (compose refuses otherwise)
            assert not _profiles(target) or _profiles(service) <= _profiles(target), f"{name} -> {dep}"
            wanted = "service_completed_successfully" if _one_shot(target) else "service_healthy"
            assert spec["condition"] == wanted, f"{name} -> {dep}: {spec}"
            if wanted == "service_healthy":
                assert "healthcheck" in target, dep


def test_one_shots_are_adopted_so_up_wait_succeeds() -> None:
    """`docker compose up --wait` counts an exited container as a failure unless a running service depends on it
    with service_completed_successfully."""
    for profile in ("product",):
        enabled = _enabled(profile)
        for name, service in enabled.items():
            if _one_shot(service):
                adopters = [
                    n
                    for n, s in enabled.items()
                    if not _one_shot(s)
                    and (s.get("depends_on") or {}).get(name, {}).get("condition") == "service_completed_successfully"
                ]
                assert adopters, f"{name} (profile {profile}) is adopted by no running service"


def test_stage_dependencies() -> None:
    services = _services()
    for name in ("gather-g1", "gather-g2", "gather-g3", "dedup", "sink"):
        assert "topics" in services[name]["depends_on"], name
    assert services["topics"]["depends_on"]["redpanda"]["condition"] == "service_healthy"
    assert "prometheus" in services["grafana"]["depends_on"]


def test_every_product_process_reads_the_optional_settings_file(tmp_path: Path) -> None:
    """infra/mdpipe.env carries any other setting (a Kafka cluster's SASL, replication factor...) to every mdpipe
    process of the product, one-shots included; optional, so the profile starts without it."""
    product = {n: s for n, s in _mdpipe_services().items() if "product" in _profiles(s)}
    assert {"topics", "migrate", "gather-g1", "gather-g2", "gather-g3", "dedup", "sink"} <= set(product)
    for name, service in product.items():
        assert service.get("env_file") == [{"path": "./mdpipe.env", "required": False}], name
    for name in ("demo", "tests", "venue"):  # these always use this file's broker and database, nothing else
        assert "env_file" not in _services()[name], name
    # the settings such a file gives reach the configuration; the service's own entries win
    settings = {"MDPIPE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "MDPIPE_KAFKA__REPLICATION_FACTOR": "3"}
    sink = _services()["sink"]
    config = load_config(environ={**settings, **_environment(sink)}, use_infra_state=False)
    assert config.kafka.security_protocol == "SASL_SSL" and config.kafka.replication_factor == 3


def test_migrations_run_once_before_the_sink() -> None:
    """A one-shot `mdpipe sink migrate` waits for a healthy database; the sink starts only after it succeeded and
    does not migrate by itself, so a schema that cannot be applied stops the product at the failed one-shot (where
    `up --wait` reports it) instead of a sink retrying in a loop."""
    services = _enabled("product")
    parser = build_parser()
    migrators = [n for n, s in services.items() if n in _mdpipe_services() and _argv(s)[1:] == ["sink", "migrate"]]
    assert migrators == ["migrate"]
    migrate = services["migrate"]
    assert _one_shot(migrate)
    assert migrate["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}
    assert _environment(migrate)["MDPIPE_POSTGRES__DSN"] == _environment(services["sink"])["MDPIPE_POSTGRES__DSN"]
    sink = services["sink"]
    args = parser.parse_args(_argv(sink)[1:])
    assert args.command == "sink" and args.action == "run" and args.no_migrate
    assert sink["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_state_lives_on_one_volume_per_stage_at_the_images_run_dir(dockerfile: Any) -> None:
    run_dir = dockerfile.stages["runtime"].env()["MDPIPE_RUN_DIR"]
    declared = set(_compose()["volumes"])
    owners: dict[str, str] = {}
    for name in ("gather-g1", "gather-g2", "gather-g3", "dedup"):
        mounts = [v.split(":") for v in _services()[name]["volumes"]]
        named = [(src, dst) for src, dst, *_ in mounts if not src.startswith((".", "/"))]
        assert [dst for _, dst in named] == [run_dir], name  # spool / RocksDB land on the volume
        volume = named[0][0]
        assert volume in declared, name
        assert volume not in owners, f"{name} shares {volume} with {owners.get(volume)}"
        owners[volume] = name
    for service in _services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in declared, source


def test_product_gathers_from_the_venue_its_deployment_file_names() -> None:
    """The venue and its URLs come from venues/<name>/deploy/compose.env (the default venue's, for `make product`);
    the environment wins over it, key ids fall back from one gatherer's own to the shared one."""
    venue_env = _venue_env()
    assert venue_env["MDPIPE_VENUE"] == default_name()
    gather = _services()["gather-g1"]
    env = _environment(gather, venue_env)
    for name in ("MDPIPE_VENUE__REST_URL", "MDPIPE_VENUE__WS_URL", "MDPIPE_VENUE__AUTH"):
        assert env[name] == venue_env[name] != "", name
    config = load_config(environ=env, use_infra_state=False)
    assert config.venue.name == default_name() and config.venue.rest_url == venue_env["MDPIPE_VENUE__REST_URL"]
    demo = {**venue_env, "MDPIPE_VENUE__REST_URL": "https://demo.example/api"}
    assert _environment(gather, demo)["MDPIPE_VENUE__REST_URL"] == "https://demo.example/api"
    assert _environment(gather, {**venue_env, "VENUE_KEY_ID": "shared"})["MDPIPE_VENUE__KEY_ID"] == "shared"
    own = _environment(gather, {**venue_env, "VENUE_KEY_ID": "shared", "MDPIPE_G1_KEY_ID": "mine"})
    assert own["MDPIPE_VENUE__KEY_ID"] == "mine"
    other = _environment(_services()["gather-g2"], {**venue_env, "VENUE_KEY_ID": "shared", "MDPIPE_G1_KEY_ID": "mine"})
    assert other["MDPIPE_VENUE__KEY_ID"] == "shared"
    # an empty venue name (set, but empty) stops the gatherers at start-up with one line naming the setting
    with pytest.raises(ConfigError, match=r"venue\.name"):
        load_config(environ={**_environment(gather, venue_env), "MDPIPE_VENUE__NAME": ""}, use_infra_state=False)


def test_every_venue_deployment_file_names_a_venue_and_its_urls() -> None:
    """Each venue folder with a deploy/compose.env names itself and both URLs; its sim.env, if any, points at the
    emulator service on the same paths as the real venue."""
    deployed = [n for n in venues.names() if (ROOT / "venues" / n / "deploy" / "compose.env").is_file()]
    assert default_name() in deployed
    for name in deployed:
        env = _venue_env(venue=name)
        assert env["MDPIPE_VENUE"] == name
        rest, ws = urlsplit(env["MDPIPE_VENUE__REST_URL"]), urlsplit(env["MDPIPE_VENUE__WS_URL"])
        assert (rest.scheme, ws.scheme) == ("https", "wss"), name
        if (ROOT / "venues" / name / "deploy" / "sim.env").is_file():
            sim = _venue_env("sim.env", venue=name)
            assert urlsplit(sim["MDPIPE_VENUE__REST_URL"]).path == rest.path, name
            assert urlsplit(sim["MDPIPE_VENUE__WS_URL"]).path == ws.path, name


def _secret_files(env: Mapping[str, str]) -> dict[str, Path]:
    """Secret name -> the host file compose mounts for it (relative paths: from the compose file's folder)."""
    return {name: (INFRA / interpolate(spec["file"], env)).resolve() for name, spec in _compose()["secrets"].items()}


def _mounted_secrets(service: dict[str, Any], env: Mapping[str, str]) -> dict[str, Path]:
    """Container path -> host file of the service's secrets (compose mounts them under /run/secrets/)."""
    files = _secret_files(env)
    out = {}
    for entry in service.get("secrets", []):
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        target = target or source
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = files[source]
    return out


def _keypair(folder: Path) -> tuple[str, Path]:
    """A key id and the path of a fresh RSA private key (PEM) in ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder.mkdir(parents=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "key.pem"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return f"key-{folder.name}", path


def test_each_gatherer_signs_with_the_key_file_it_is_given(tmp_path: Path) -> None:
    """Private keys come from secret files on the host, never from the image or this file: the configuration each
    gatherer container gets, with the secret mounted where compose mounts it, builds the venue's signer for its key;
    a gatherer's own key file (MDPIPE_G<n>_PRIVATE_KEY_FILE) replaces the shared one for it alone."""
    venue_env = _venue_env()
    venue = venues.get_venue(venue_env["MDPIPE_VENUE"])
    shared, own = _keypair(tmp_path / "shared"), _keypair(tmp_path / "own")
    env = {
        **venue_env,
        "VENUE_KEY_ID": shared[0],
        "VENUE_PRIVATE_KEY_FILE": str(shared[1]),
        "MDPIPE_G3_KEY_ID": own[0],
        "MDPIPE_G3_PRIVATE_KEY_FILE": str(own[1]),
    }
    expected = {"gather-g1": shared, "gather-g2": shared, "gather-g3": own}
    for name, (key_id, key_path) in expected.items():
        service = _services()[name]
        config = load_config(environ=_environment(service, env), use_infra_state=False)
        assert config.venue.auth and not config.venue.private_key_pem, name
        mounted = _mounted_secrets(service, env)
        assert mounted[config.venue.private_key_path] == key_path.resolve(), name
        signer = venue.signer(config.venue.key_id, "", str(mounted[config.venue.private_key_path]))
        assert signer.key_id == key_id and key_id in signer.headers(ts_ms=1_700_000_000_000).values(), name
    default = _secret_files(venue_env)
    assert set(default.values()) == {INFRA / "secrets" / f"{venue_env['MDPIPE_VENUE']}-private-key.pem"}


def test_no_key_material_in_the_compose_file_or_the_image() -> None:
    text = COMPOSE_FILE.read_text()
    assert "PRIVATE KEY" not in text and "PRIVATE_KEY_PEM" not in text
    for service in _mdpipe_services().values():  # no service takes the PEM text through its environment
        assert not any("PRIVATE_KEY_PEM" in key for key in (service.get("environment") or {})), service
    ignored = (ROOT / ".dockerignore").read_text().split()
    # `COPY . ./` of the test image never takes them
    assert {"infra/secrets", "**/.env", "infra/mdpipe.env"} <= set(ignored)
    secrets_dir = INFRA / "secrets"
    gitignore = (secrets_dir / ".gitignore").read_text().split()
    assert "*" in gitignore and "!README.md" in gitignore
    for path in (secrets_dir / f"{default_name()}-private-key.pem", INFRA / ".env", INFRA / "mdpipe.env"):
        if not (ROOT / ".git").exists():  # the test image's tree has no .git (.dockerignore)
            break
        assert subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT).returncode == 0, path


def test_sim_env_points_the_gatherers_at_the_emulator_service() -> None:
    """The default venue's sim.env (read after its compose.env) points the gatherers at the `venue` service, which
    serves that venue's protocol on the real venue's paths, signing off."""
    sim_env = _venue_env("sim.env")
    real = _venue_env()
    venue = _services()["venue"]
    assert _profiles(venue) == {"sim"}
    argv = _resolved(_argv(venue), sim_env)
    args = build_parser().parse_args(argv[1:])
    assert args.command == "sim" and args.host == "0.0.0.0" and args.no_auth
    assert _environment(venue, sim_env)["MDPIPE_VENUE__NAME"] == default_name()
    env = _environment(_services()["gather-g1"], sim_env)
    rest, ws = urlsplit(env["MDPIPE_VENUE__REST_URL"]), urlsplit(env["MDPIPE_VENUE__WS_URL"])
    assert (rest.scheme, rest.hostname, rest.port) == ("http", "venue", args.port)
    assert (ws.scheme, ws.hostname, ws.port) == ("ws", "venue", args.port)
    assert rest.path == urlsplit(real["MDPIPE_VENUE__REST_URL"]).path
    assert ws.path == urlsplit(real["MDPIPE_VENUE__WS_URL"]).path
    assert load_config(environ=env, use_infra_state=False).venue.auth is False
    for path in _mounted_secrets(_services()["gather-g1"], sim_env).values():
        assert path.is_file(), f"compose refuses a secret whose file is missing: {path}"
    assert venue["healthcheck"]["test"][-1] == f"http://127.0.0.1:{args.port}/_sim/stats"


def test_demo_and_tests_services_use_this_files_broker_and_database() -> None:
    services = _services()
    internal = re.search(r"--advertise-kafka-addr internal://([\w.-]+:\d+)", " ".join(services["redpanda"]["command"]))
    assert internal is not None
    creds = services["timescaledb"]["environment"]
    dsn = f"postgresql://{creds['POSTGRES_USER']}:{creds['POSTGRES_PASSWORD']}@timescaledb:5432/{creds['POSTGRES_DB']}"
    demo, tests = services["demo"], services["tests"]
    assert demo["entrypoint"] == ["mdpipe", "demo"] and _profiles(demo) == {"demo"}
    # host settings must not leak in: the values are literals, not ${...}
    assert demo["environment"]["MDPIPE_KAFKA__BOOTSTRAP_SERVERS"] == internal.group(1)
    assert demo["environment"]["MDPIPE_POSTGRES__DSN"] == dsn
    assert _profiles(tests) == {"test"}
    assert tests["environment"] == {
        "MDPIPE_TEST_INFRA": "external",
        "MDPIPE_TEST_BOOTSTRAP": internal.group(1),
        "MDPIPE_TEST_DSN": dsn,
    }
    script = tests["entrypoint"]
    assert script[:2] == ["sh", "-c"] and "ruff check ." in script[2] and 'exec pytest "$$@"' in script[2]
    for name in ("demo", "tests"):
        assert set(services[name]["depends_on"]) == {"redpanda", "timescaledb"}


def test_the_second_dedup_worker_of_docs_deploy_md_joins_the_group_without_sharing_state_or_port() -> None:
    """docs/deploy.md's example compose file for a second dedup worker, merged into this one as compose would:
    the same consumer group (app id) as `dedup`, its own volume at the run folder, its own metrics port."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```yaml\n(# infra/compose\.dedup-2\.yaml\n.*?)```", docs, flags=re.S)
    assert block is not None, "docs/deploy.md lost its dedup-2 example"
    extra = yaml.safe_load(block.group(1))
    services = {**_services(), **extra["services"]}
    second, first = services["dedup-2"], services["dedup"]
    assert second["image"] == first["image"] and _profiles(second) == _profiles(first)
    assert second["env_file"] == first["env_file"]
    configs = [load_config(environ=_environment(s), use_infra_state=False) for s in (first, second)]
    assert configs[0].dedup.app_id == configs[1].dedup.app_id
    assert configs[0].kafka.bootstrap_servers == configs[1].kafka.bootstrap_servers
    host, port = _metrics_address(second)
    assert host == "0.0.0.0" and port != _stage_port(first) and f"127.0.0.1:{port}:{port}" in second["ports"]
    (volume,) = second["volumes"]
    name, target = volume.split(":")
    assert target == "/var/lib/mdpipe" and name in extra["volumes"] and name not in _compose()["volumes"]
    for dep, spec in second["depends_on"].items():
        assert dep in services and spec["condition"] == "service_completed_successfully" and _one_shot(services[dep])
    assert f"dedup-2:{port}" in docs  # the doc says which scrape target to add


# --- Prometheus and Grafana --------------------------------------------------------------------------------------
def _prometheus_config() -> tuple[Path, dict[str, Any]]:
    prom = _services()["prometheus"]
    flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    path = _host_path(prom, flag.split("=", 1)[1])
    return path, yaml.safe_load(path.read_text())


def test_prometheus_scrapes_every_stage_by_service_name_with_the_rules() -> None:
    path, config = _prometheus_config()
    assert path.is_file() and path.parent == INFRA / "prometheus"
    for rule_file in config["rule_files"]:
        assert (path.parent / rule_file).is_file(), rule_file
    assert "alerts.yml" in config["rule_files"]
    targets = {
        job["job_name"]: {t for sc in job["static_configs"] for t in sc["targets"]} for job in config["scrape_configs"]
    }
    expected: dict[str, set[str]] = {}
    for name, service in _stages().items():
        command = _argv(service)[1]
        if command in STAGE_SECTIONS and "product" in _profiles(service):
            expected.setdefault(f"mdpipe-{command}", set()).add(f"{name}:{_stage_port(service)}")
    assert targets == expected
    alerts = (path.parent / "alerts.yml").read_text()
    for job in re.findall(r'job="([^"]+)"', alerts):
        assert job in targets, f"alerts.yml selects job {job}, which nothing scrapes"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package 'prometheus')")
def test_promtool_accepts_the_compose_prometheus_config() -> None:
    path, _ = _prometheus_config()
    done = subprocess.run(
        ["promtool", "check", "config", path.name], cwd=path.parent, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    mounts = _bind_mounts(grafana)
    for target, source in mounts.items():
        assert source.exists(), f"{target} <- {source}"
    datasources = yaml.safe_load((mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    prom = urlsplit(source["url"])
    assert prom.hostname == "prometheus" and prom.hostname in _services()
    assert any(p.endswith(f":{prom.port}") for p in _services()["prometheus"]["ports"])
    providers = yaml.safe_load((mounts["/etc/grafana/provisioning/dashboards"] / "mdpipe.yaml").read_text())
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    dashboards = [t for t, s in mounts.items() if t.startswith(folder.rstrip("/") + "/")]
    assert [mounts[t] for t in dashboards] == [INFRA / "grafana" / "mdpipe.json"]
    dashboard = json.loads(_host_path(grafana, dashboards[0]).read_text())
    assert dashboard["uid"] and dashboard["panels"]
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == source["type"]  # ${datasource} resolves to the default Prometheus datasource
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboards[0]


# --- docker compose itself, where installed ----------------------------------------------------------------------
def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed on this host")
@pytest.mark.parametrize("profiles", [[], ["product"], ["product", "sim"], ["demo"], ["test"]])
def test_docker_compose_config_accepts_the_file(profiles: list[str]) -> None:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(_venue_file()), *flags, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# --- the documented commands -------------------------------------------------------------------------------------
DOCUMENTED = sorted(
    str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("venues/*/deploy/*.md")]
)


def test_every_documented_compose_command_passes_the_venues_file() -> None:
    """A `docker compose -f infra/compose.yaml ...` of the docs (a command, or a shell variable C=... holding one)
    passes a venue's compose.env: without it compose refuses (above), and before that guard it recreated every
    gatherer with an empty venue. infra/.env only when it exists (compose refuses a missing --env-file)."""
    seen = 0
    for doc in DOCUMENTED:
        path = ROOT / doc
        if not path.is_file():
            continue
        text = re.sub(r"\s*\\\n\s*#?\s*", " ", path.read_text())  # continuation lines joined
        for match in re.finditer(r"docker compose -f infra/compose\.yaml[^`\n]*", text):
            seen += 1
            command = match.group()
            assert re.search(r"--env-file venues/[a-z0-9_]+/deploy/compose\.env", command), f"{doc}: {command}"
            assert "--env-file infra/.env" not in command.replace("[--env-file infra/.env]", ""), f"{doc}: {command}"
        for line in text.splitlines():  # every use of $C follows a C=... that has the venue's file
            if line.lstrip().startswith("$C ") or " $C " in line:
                assert re.search(r'^C="docker compose [^"]*--env-file venues/', text, flags=re.M), f"{doc}: {line}"
    assert seen >= 6


def test_no_compose_variable_is_an_underscore_away_from_an_mdpipe_setting() -> None:
    """A compose variable one underscore from the setting it feeds (MDPIPE_VENUE_KEY_ID vs MDPIPE_VENUE__KEY_ID) is
    set in the wrong place in silence; the same name for both (MDPIPE_VENUE__REST_URL) is fine."""
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    settings = {key for service in _mdpipe_services().values() for key in (service.get("environment") or {})}
    assert "MDPIPE_VENUE__KEY_ID" in settings and "VENUE_KEY_ID" in variables
    clashes = {(v, s) for v in variables for s in settings if v != s and v.replace("_", "") == s.replace("_", "")}
    assert clashes == set()
