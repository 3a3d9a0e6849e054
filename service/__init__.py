"""fenced: a consistent event store on Apache Kafka."""
