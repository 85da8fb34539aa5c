"""The MQTT side: the publisher (the only aiomqtt user), topic names, discovery, bridge requests."""
