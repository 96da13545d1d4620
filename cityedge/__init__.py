"""What the gateway and the collector share: the uplink wire format and config loading."""
