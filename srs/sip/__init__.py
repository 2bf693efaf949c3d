"""Pure SIP (RFC 3261, RFC 3581, RFC 6026): messages, framing, routing, transactions, dialogs.

Nothing here opens a socket or reads a clock; callers pass bytes and ``now`` in
and get bytes and events back.
"""
