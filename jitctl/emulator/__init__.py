"""An emulator of the Azure Resource Manager endpoints JIT touches, built like moto.

backend (state + Azure's rules, raising ArmError) -> responses (HTTP <-> backend, a route table)
-> transport (in-process, for the real SDK clients) or server (HTTPS, for any client).
"""

from jitctl.clock import FakeClock, SystemClock
from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.settings import Settings

__all__ = ["ArmError", "Backend", "FakeClock", "Settings", "SystemClock"]
