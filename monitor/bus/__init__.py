"""Events on their way out of a monitor, and acknowledgements on their way back in.

- `pubsub`: the ZeroMQ PUB/SUB bus, the only place events are encoded and decoded (Envelope, Publisher, Subscriber);
- `keys`: CURVE keys for a bus that leaves the PC;
- `control`: the REQ/REP channel over which dashboards acknowledge or silence alarms;
- `notify`: `[alerts] command`, a site's pager run on alarm events;
- `endpoints`: a monitor's publisher and control server, opened and closed together;
- `fanout`: a monitor's events to the alarm manager, the log, the bus and the pager.

`keys`, `control` and `notify` import only `pubsub` of these; `endpoints` and `fanout` put them together. The
package offers the bus itself; the others are imported by name where they are used (the keys' authenticator
and the pager's thread are not every user's).
"""
from monitor.bus.pubsub import (
    SCHEMA_VERSION,
    BusError,
    Envelope,
    Publisher,
    SchemaMismatch,
    Subscriber,
    ThrottledWarning,
    decode,
    encode,
)

__all__ = ["SCHEMA_VERSION", "BusError", "Envelope", "Publisher", "SchemaMismatch", "Subscriber", "ThrottledWarning",
           "decode", "encode"]
