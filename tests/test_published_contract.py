"""The published contract stays true: README topic table, JSON Schemas, AsyncAPI, Node-RED flow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bridge.mqtt.schemas import END, START, TOPICS, payload_schemas, topics_table, write_schemas

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FLOW = ROOT / "examples" / "node-red" / "fin2mqtt-flow.json"


def readme_rows() -> list[list[str]]:
    text = README.read_text()
    table = text[text.index(START) : text.index(END)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_readme_topic_table_is_what_fin2mqtt_topics_prints():
    printed = subprocess.run(
        [sys.executable, "-m", "bridge", "topics", "--table"], capture_output=True, check=True
    ).stdout.decode()
    text = README.read_text()
    assert text[text.index(START) : text.index(END) + len(END)] == topics_table()
    assert printed.strip() == topics_table()


def test_every_readme_topic_a_client_receives_names_a_published_schema():
    schemas = payload_schemas()
    rows = readme_rows()
    assert len(rows) == len(TOPICS) > 15
    for topic, retained, _qos, schema, _payload in rows:
        if retained == "—":  # what clients publish (requests)
            continue
        names = re.findall(r"`([a-z_]+)`", schema)
        assert names, f"README row {topic} has no schema"
        assert set(names) <= set(schemas), f"README row {topic}: unknown schema {schema}"


def test_the_full_topic_reference_lists_the_installed_plugins():
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "topics"], capture_output=True, check=True
    ).stdout.decode()
    for title in ("Hibachi", "IBEX", "Vezgo", "Vezta", "Example"):
        assert f"\n{title} (" in out
    assert "event         Transaction" in out


def test_the_published_schemas_are_generated_from_the_models(tmp_path):
    write_schemas(tmp_path)
    published = ROOT / "schemas"
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert {p.name: p.read_text() for p in published.iterdir()} == generated, (
        "run: uv run fin2mqtt schemas schemas"
    )
    balance = json.loads(generated["balance.schema.json"])
    assert balance["properties"]["total"]["type"] == "string"  # money is a decimal string
    assert "schema" in balance["required"] or "schema" in balance["properties"]
    transaction = json.loads(generated["transaction.schema.json"])
    assert "event_type" in transaction["properties"]
    asyncapi = json.loads(generated["asyncapi.json"])
    assert asyncapi["asyncapi"].startswith("2.")
    channel = asyncapi["channels"]["fin2mqtt/{instance}/{account}/position/{symbol}"]
    refs = {m["$ref"] for m in channel["subscribe"]["message"]["oneOf"]}
    assert refs == {"#/components/messages/position", "#/components/messages/removed"}
    for name in asyncapi["components"]["messages"]:
        assert name in asyncapi["components"]["schemas"]


def test_the_node_red_example_flow_imports():
    nodes = json.loads(FLOW.read_text())
    ids = {node["id"] for node in nodes}
    assert len(ids) == len(nodes)
    patterns = [
        re.escape(t.strip().strip("`")).replace("<base>", "fin2mqtt")
        for row in TOPICS
        for t in row.topic.split(",")
    ]
    patterns = [re.sub(r"<[a-z]+>", "[^/]+", p) for p in patterns]
    for node in nodes:
        for wire in (w for output in node.get("wires", []) for w in output):
            assert wire in ids, f"{node['id']} wires to a missing node {wire}"
        if node["type"] in ("mqtt in", "mqtt out"):
            assert node["broker"] in ids
            topic = node["topic"].replace("+", "x").replace("#", "x")
            assert any(re.fullmatch(p.replace(re.escape("x"), "x"), topic) for p in patterns) or (
                node["topic"].endswith("/#")
            ), node["topic"]
        if node["type"] == "mqtt in":
            assert node["datatype"] == "json"  # every payload it receives is JSON
