"""An oracle node of the DON (DESIGN.md "Decide", "Report", "Execute").

config.py      TOML + environment configuration; builds the real observers/deliverers
store.py       the node's persistent state (terms, locks, cursors, decisions, signatures, reports)
node.py        the node: poll, decide, share, lead rounds, deliver (one step or a run loop)
consensus.py   rounds: leader rotation by time slot, follower checks, complete reports
delivery.py    staggered, confirmed delivery of complete reports to every network
peers.py       authenticated peer envelopes and the HTTP peer transport
api.py         the HTTP API (FastAPI)
memory.py      in-memory twins of the ledgers and of the peer network (tests)
ports.py       the Observer / Deliverer protocols; observe*.py / transmit*.py implement them
"""

from crossdvp.oracle.config import NodeConfig, load_config
from crossdvp.oracle.node import Node, NodeSettings
from crossdvp.oracle.store import NodeStore

__all__ = ["Node", "NodeConfig", "NodeSettings", "NodeStore", "load_config"]
