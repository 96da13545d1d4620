"""Device simulators: the other end of the wire, driven by the firmware profiles."""
