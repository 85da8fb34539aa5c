"""The ``fin2mqtt`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bridge import __version__
from bridge.config.loader import LoadedConfig, load_config
from bridge.config.settings import search_path
from bridge.model.errors import ConfigError
from bridge.model.redaction import SECRETS, public_text
from bridge.runtime.logsetup import setup_logging
from bridge.runtime.plugin_loader import installed_providers

EXIT_CONFIG = 2

DESCRIPTION = """\
fin2mqtt bridges finance platforms to MQTT. Each configured provider instance keeps a live link
to its platform; what it receives is published as normalized JSON on MQTT topics, with retained
balances and statuses and Home Assistant discovery."""


def _config_help() -> str:
    paths = ", ".join(str(p) for p in search_path())
    return f"configuration file (default: $FIN2MQTT_CONFIG, else the first of: {paths})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="fin2mqtt",
        description=DESCRIPTION,
        epilog="Exit codes: 0 ok, 1 runtime failure (status: unhealthy), 2 configuration error, "
        "3 (status) broker unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"fin2mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the bridge (what the systemd service does)")
    run.add_argument("-c", "--config", type=Path, help=_config_help())
    run.add_argument(
        "--log-level",
        choices=["trace", "debug", "info", "warning", "error"],
        help="override the configured log level",
    )

    check = sub.add_parser(
        "check", help="validate the configuration and the plugins it uses; connect to nothing"
    )
    check.add_argument("-c", "--config", type=Path, help=_config_help())

    sub.add_parser("plugins", help="list the installed provider plugins and their versions")

    status = sub.add_parser(
        "status",
        help="show every daemon's health (<base>/bridge/health on the configured broker); "
        "exit 1 when one is unhealthy, 3 when the broker is unreachable",
    )
    status.add_argument("-c", "--config", type=Path, help=_config_help())
    status.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds a link may be down or on its fallback before it counts as unhealthy "
        "(default 60; refused credentials count at once)",
    )
    status.add_argument(
        "--wait",
        type=float,
        default=0.5,
        help="seconds to wait for further retained messages (default 0.5)",
    )

    demo = sub.add_parser(
        "demo",
        help="run the bridge with every installed plugin against its simulator and show what "
        "it publishes (starts its own broker unless the configuration names one)",
    )
    demo.add_argument("-c", "--config", type=Path, help="take the [mqtt] broker from this file")
    demo.add_argument("--seconds", type=float, help="stop after this many seconds")

    topics = sub.add_parser(
        "topics", help="print the MQTT topic reference and what the installed plugins add"
    )
    topics.add_argument("--table", action="store_true", help="only the README's topic table")
    schemas = sub.add_parser(
        "schemas", help="write the JSON Schema of every payload and an AsyncAPI document"
    )
    schemas.add_argument("directory", type=Path, help="where to write them")
    return parser


def _load(path: Path | None) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {SECRETS.scrub(problem)}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    logs = config.settings.logging
    setup_logging(args.log_level or config.settings.log_level, logs.format, logs.levels)
    if config.path is None:
        print("note: no configuration file found; using defaults", file=sys.stderr)
    from bridge.runtime.daemon import run_daemon

    return asyncio.run(run_daemon(config))


def cmd_check(args: argparse.Namespace) -> int:
    """Validate configuration and plugins."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    where = config.path if config.path is not None else "defaults (no file found)"
    mqtt = config.settings.mqtt
    print(f"configuration OK: {where}")
    print(f"  broker: {public_text(mqtt.host)}:{mqtt.port}, base topic '{mqtt.base_topic}'")
    print(f"  state directory: {config.settings.state_dir}")
    if not config.instances:
        print("  no provider instances configured ([[providers]] tables)")
    for instance in config.instances:
        print(f"  provider '{instance.name}': type {instance.provider_type}")
    return 0


def cmd_plugins(_args: argparse.Namespace) -> int:
    """List installed providers."""
    found = installed_providers()
    if not found:
        print("no provider plugins installed (pip install fin2mqtt-<provider>)")
        return 0
    width = max(len(p.type) for p in found)
    for p in found:
        print(f"{p.type:<{width}}  {p.distribution} {p.version}  ({p.target})")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """The topic reference; then, per installed plugin, its Home Assistant entities."""
    from bridge.mqtt.schemas import topics_table
    from bridge.runtime.plugin_loader import load_provider_classes

    print(topics_table())
    if args.table:
        return 0
    found = installed_providers()
    classes, _problems = load_provider_classes([p.type for p in found])
    for p in found:
        provider = classes.get(p.type)
        if provider is None:
            continue
        title = provider.display_name or p.type.capitalize()
        print(f"\n{title} ({p.type} {p.version}): Home Assistant entities")
        for spec in provider.entities:
            where = " when " + ", ".join(f"{k}={v}" for k, v in spec.match) if spec.match else ""
            print(f"  {spec.component:<13} {spec.name:<32} from {spec.kind} topics{where}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    """Write the published schemas."""
    from bridge.mqtt.schemas import write_schemas

    for path in write_schemas(args.directory):
        print(path)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Summarise every daemon's health from the broker."""
    from bridge.config.settings import find_config, load_settings
    from bridge.runtime.status import status

    try:
        mqtt = load_settings(find_config(args.config)).mqtt
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {SECRETS.scrub(problem)}", file=sys.stderr)
        return EXIT_CONFIG
    code, summary = asyncio.run(status(mqtt, args.grace, args.wait))
    print(summary, file=sys.stdout if code != 3 else sys.stderr)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo."""
    from bridge.config.settings import find_config, load_settings
    from bridge.runtime.demo import run_demo

    mqtt = None
    path = find_config(args.config)
    from_env = sorted(k for k in os.environ if k.startswith("FIN2MQTT_MQTT__"))
    if path is not None or from_env:
        try:
            mqtt = load_settings(path).mqtt
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        where = str(path) if path is not None else ", ".join(from_env)
        print(f"using the broker configured in {where}", file=sys.stderr)
    setup_logging("warning")
    return asyncio.run(run_demo(mqtt, args.seconds))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fin2mqtt`` command."""
    args = build_parser().parse_args(argv)
    commands = {
        "run": cmd_run,
        "check": cmd_check,
        "plugins": cmd_plugins,
        "demo": cmd_demo,
        "topics": cmd_topics,
        "schemas": cmd_schemas,
        "status": cmd_status,
    }
    return commands[args.command](args)
