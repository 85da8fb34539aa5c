"""IBEX FI settings: the token is checked against the host before anything connects."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from fin2mqtt_ibex.auth import rp_id_of, token_problem
from fin2mqtt_ibex.settings import IbexSettings
from fin2mqtt_ibex.simulator import SECRET

SAFE = "0x" + "a1" * 20


def mint(issuer: str = "ibex.fi", expires_in: float = 3600) -> str:
    return jwt.encode({"iss": issuer, "exp": time.time() + expires_in}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("host", "rp_id"),
    [
        ("api.ibex.fi", "ibex.fi"),
        ("api-staging.ibex.fi", "ibex.fi"),
        ("api-testnet.ibex.fi", "ibex.fi"),
        ("ibex.fi", "ibex.fi"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("API.IBEX.FI.", "ibex.fi"),
    ],
)
def test_rp_id_is_the_registrable_domain(host, rp_id):
    assert rp_id_of(host) == rp_id


def test_token_problems():
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    assert token_problem(mint(), "ibex.fi", now) is None
    assert token_problem("not-a-jwt", "ibex.fi", now) == "the token is not a JWT"
    assert token_problem(mint("localhost"), "ibex.fi", now) == (
        "the token was issued for 'localhost', but this API host expects iss 'ibex.fi'"
    )
    assert token_problem(mint(expires_in=-10), "ibex.fi", now).startswith("the token expired at ")


def test_urls_and_issuer():
    s = IbexSettings(token=mint(), blockchain_id=100)
    assert s.websocket_url == "wss://api.ibex.fi/ws?blockchainId=100"
    assert s.expected_issuer == "ibex.fi"
    local = IbexSettings(token=mint("127.0.0.1"), api_url="http://127.0.0.1:8080/")
    assert (local.api_url, local.websocket_url) == (
        "http://127.0.0.1:8080",
        "ws://127.0.0.1:8080/ws",
    )
    custom = IbexSettings(
        token=mint("ibex.co.uk"), api_url="https://api.ibex.co.uk", rp_id="ibex.co.uk"
    )
    assert custom.expected_issuer == "ibex.co.uk"


def run_check(tmp_path: Path, table: str) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text(f'[[providers]]\ntype = "ibex"\nname = "ibex"\n{table}\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout
    return [line.removeprefix(f"error: {path}: ") for line in result.stderr.splitlines()]


def test_a_token_for_another_host_is_a_configuration_error(tmp_path):
    assert run_check(tmp_path, f'token = "{mint("localhost")}"') == [
        "providers[0]: token: the token was issued for 'localhost', "
        "but this API host expects iss 'ibex.fi'"
    ]


def test_an_expired_token_is_a_configuration_error(tmp_path):
    [line] = run_check(tmp_path, f'token = "{mint(expires_in=-5)}"')
    assert line.startswith("providers[0]: token: the token expired at ")


def test_other_bad_settings(tmp_path):
    table = (
        f'token = "{mint()}"\n'
        'api_url = "https://api.ibex.fi/v1.2"\n'
        "poll_interval = 0.5\n"
        f'safes = [{{address = "{SAFE}", alias = "a"}}, {{address = "0x12", alias = "b"}}]\n'
    )
    assert run_check(tmp_path, table) == [
        "providers[0].api_url: must be the API host only, without a path",
        "providers[0].safes[1].address: must be a 0x-prefixed 40-hex-digit Safe address",
    ]
    assert run_check(tmp_path, f'token = "{mint()}"\npoll_interval = 0.5') == [
        "providers[0]: poll_interval 0.5 s would exceed the rate limit: "
        "at least 1.2 s (2 requests per poll)"
    ]
    assert run_check(tmp_path, "") == [
        "providers[0]: give exactly one of token, token_file, token_command"
    ]
