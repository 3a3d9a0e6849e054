"""The read side: the projector that applies the consumer rule to Redis, the projection it keeps, the log
barrier that makes reads linearizable, and the replays (``fenced verify``) that check it."""
