"""From events to the outbox: parse context, hub (dedup, topics), retained state, durable outbox."""
