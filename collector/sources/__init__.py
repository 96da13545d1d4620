"""Where batches come from: MQTT (shared subscription) and HTTP, same semantics."""
