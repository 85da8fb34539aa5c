"""The plugin-author kit: brokers, MQTT recorder and daemon driver for tests and demos."""
