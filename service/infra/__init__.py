"""Connections to the outside: Kafka (producer, topics, ACLs) and Redis clients built from the settings."""
