"""``edge-sim fleet``: the city's gateways simulated in one process (see fleet.py)."""

from simulators.city_fleet.fleet import Fault, Fleet, FleetOptions, FleetReport
from simulators.city_fleet.sites import SitePlan, city, first

__all__ = ["Fault", "Fleet", "FleetOptions", "FleetReport", "SitePlan", "city", "first"]
