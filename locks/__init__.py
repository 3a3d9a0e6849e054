"""Per-resource Redis leases with fencing tokens that never go backwards."""

from locks.errors import (
    LeaseBusy,
    LeaseError,
    LeaseLost,
    NotBootstrapped,
    NotReady,
    RedisUnavailable,
)
from locks.leases import EPOCH_SHIFT, META_KEY, Held, Lease, Leases, stream_key, token_epoch

__all__ = [
    "EPOCH_SHIFT", "META_KEY", "Held", "Lease", "LeaseBusy", "LeaseError", "LeaseLost", "Leases",
    "NotBootstrapped", "NotReady", "RedisUnavailable", "stream_key", "token_epoch",
]
