"""The edge agent: serial sensors -> firmware-profile decoder -> durable outbox -> uplink."""
