"""One module per concern (incidents, job runs); each is imported here so Django finds
its models."""
