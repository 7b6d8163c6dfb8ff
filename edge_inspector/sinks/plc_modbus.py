"""The Modbus TCP face of the PLC bridge (pymodbus 3.16 server, holding registers).

Each camera owns a block of 100 registers at ``100 × index`` (its position in ``plc.cameras``).
The block's registers are rendered from its :class:`CameraTracker` whenever the PLC reads them,
so a read always sees the tracker's current state; the PLC may write only the trigger and
acknowledge registers.  The README's "PLC bridge" section is the reference for the map.
"""

from __future__ import annotations

from typing import Any, Callable

from edge_inspector.sinks.plc_tracker import CameraTracker

BLOCK = 100
HEARTBEAT, STATUS, RESULT_COUNTER, PART_HI, PART_LO, RESULT, CODE, SCORE, SEQ_HI, SEQ_LO = range(10)
DEADLINE_MISSES, PENDING, TRIGGERS = 10, 11, 12
TRIGGER_HI, TRIGGER_LO, ACK = 20, 21, 22
WRITABLE = {TRIGGER_HI, TRIGGER_LO, ACK}
BIT_ONLINE, BIT_FAULT, BIT_RESULT_VALID, BIT_PART_PENDING, BIT_OVERFLOW = 1, 2, 4, 8, 16


def render(t: CameraTracker, heartbeat: int, trigger_hi: int) -> list[int]:
    """The camera's 100 registers."""
    regs = [0] * BLOCK
    d = t.current
    status = (BIT_ONLINE if t.online else 0) | (BIT_FAULT if t.fault else 0) | \
        (BIT_RESULT_VALID if t.result_valid else 0) | (BIT_PART_PENDING if t.parts else 0) | \
        (BIT_OVERFLOW if t.overflows else 0)
    regs[HEARTBEAT], regs[STATUS], regs[RESULT_COUNTER] = heartbeat & 0xFFFF, status, t.result_counter & 0xFFFF
    if d is not None:
        regs[PART_HI], regs[PART_LO] = d.part_id >> 16, d.part_id & 0xFFFF
        regs[RESULT], regs[CODE], regs[SCORE] = d.result, d.code, d.score_milli
        regs[SEQ_HI], regs[SEQ_LO] = (d.seq >> 16) & 0xFFFF, d.seq & 0xFFFF
    regs[DEADLINE_MISSES] = t.deadline_misses & 0xFFFF
    regs[PENDING] = len(t.waiting) & 0xFFFF
    regs[TRIGGERS] = t.triggers & 0xFFFF
    regs[TRIGGER_HI] = trigger_hi
    return regs


class ModbusFace:
    """Builds the pymodbus server; must be created and run on the bridge's event loop."""

    def __init__(self, trackers: list[CameraTracker], heartbeat: Callable[[], int],
                 on_change: Callable[[], None]) -> None:
        self.trackers = trackers
        self._heartbeat = heartbeat
        self._on_change = on_change
        self._trigger_hi = [0] * len(trackers)
        self.server: Any = None

    async def start(self, host: str, port: int) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        device = SimDevice(0, simdata=[SimData(0, count=BLOCK * len(self.trackers), values=0,
                                               datatype=DataType.REGISTERS)], action=self._action)
        self.server = ModbusTcpServer(device, address=(host, port))
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      values: list[int] | list[bool] | None) -> Any:
        from pymodbus.constants import ExcCodes

        if values is not None:  # a write: only trigger and acknowledge registers
            for i, value in enumerate(values):
                cam, reg = divmod(address + i, BLOCK)
                if reg not in WRITABLE or cam >= len(self.trackers):
                    return ExcCodes.ILLEGAL_ADDRESS
            for i, value in enumerate(values):
                self._write(*divmod(address + i, BLOCK), int(value))
            self._on_change()
        first, last = (address - start) // BLOCK, (address - start + count - 1) // BLOCK
        for cam in range(first, min(last + 1, len(self.trackers))):
            registers[cam * BLOCK:(cam + 1) * BLOCK] = render(self.trackers[cam], self._heartbeat(),
                                                              self._trigger_hi[cam])
        return None

    def _write(self, cam: int, reg: int, value: int) -> None:
        t = self.trackers[cam]
        if reg == TRIGGER_HI:
            self._trigger_hi[cam] = value & 0xFFFF
        elif reg == TRIGGER_LO:
            t.trigger((self._trigger_hi[cam] << 16) | (value & 0xFFFF))
        elif reg == ACK and value:
            t.acknowledge()
