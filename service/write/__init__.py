"""The write path: the group-committing writer (lease, fencing token, publish) and the token epochs."""
